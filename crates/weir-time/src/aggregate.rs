//! Incremental aggregation: the [`Aggregator`] trait and the common aggregators.
//!
//! An aggregator keeps one small accumulator per key and window instead of the window's
//! elements. `merge` combines two partial accumulators: session windows use it when a late
//! event bridges two sessions, sliding windows to combine the panes a window is made of.
//!
//! A tuple of aggregators computes several aggregations at once:
//!
//! ```
//! use weir_time::{Aggregator, Count, Sum};
//!
//! let both = (Count, Sum::of(|x: &i64| *x));
//! let mut acc = both.init();
//! both.add(&mut acc, &5);
//! both.add(&mut acc, &7);
//! assert_eq!(both.result(&acc), (2, 12));
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_core::Data;
use weir_state::StateValue;

/// An incremental aggregation over records of type `T`.
///
/// ```
/// use weir_time::Aggregator;
///
/// /// The longest string seen.
/// #[derive(Clone)]
/// struct Longest;
///
/// impl Aggregator<String> for Longest {
///     type Acc = String;
///     type Out = String;
///     fn init(&self) -> String { String::new() }
///     fn add(&self, acc: &mut String, value: &String) {
///         if value.len() > acc.len() { *acc = value.clone(); }
///     }
///     fn merge(&self, acc: &mut String, other: &String) { self.add(acc, other) }
///     fn result(&self, acc: &String) -> String { acc.clone() }
/// }
///
/// let mut acc = Longest.init();
/// Longest.add(&mut acc, &"ab".to_string());
/// Longest.merge(&mut acc, &"abc".to_string());
/// assert_eq!(Longest.result(&acc), "abc");
/// ```
pub trait Aggregator<T>: Clone + Send + 'static {
    /// The running state of one key and window (kept in keyed state, hence serializable).
    type Acc: StateValue + Clone;
    type Out: Data;
    /// The accumulator of an empty window.
    fn init(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: &T);
    /// Adds the partial result `other` (of other elements) into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc);
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// Counts records.
///
/// ```
/// use weir_time::{Aggregator, Count};
///
/// let mut acc = Aggregator::<&str>::init(&Count);
/// Aggregator::<&str>::add(&Count, &mut acc, &"x");
/// Aggregator::<&str>::merge(&Count, &mut acc, &2);
/// assert_eq!(Aggregator::<&str>::result(&Count, &acc), 3);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Count;

impl<T> Aggregator<T> for Count {
    type Acc = u64;
    type Out = u64;
    #[inline]
    fn init(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _: &T) {
        *acc += 1;
    }
    #[inline]
    fn merge(&self, acc: &mut u64, other: &u64) {
        *acc += other;
    }
    #[inline]
    fn result(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// Numbers that [`Sum`] and [`Avg`] can add. Integer sums wrap on overflow.
pub trait Number:
    Copy + Default + PartialOrd + Send + Serialize + DeserializeOwned + 'static
{
    fn plus(self, other: Self) -> Self;
    fn to_f64(self) -> f64;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Number for $t {
            #[inline]
            fn plus(self, other: Self) -> Self { self.wrapping_add(other) }
            #[inline]
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
integer!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl Number for f64 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self + other
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Number for f32 {
    #[inline]
    fn plus(self, other: Self) -> Self {
        self + other
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

/// Sums a number taken from each record.
///
/// ```
/// use weir_time::{Aggregator, Sum};
///
/// let sum = Sum::of(|x: &(char, i64)| x.1);
/// let mut acc = sum.init();
/// sum.add(&mut acc, &('a', 2));
/// sum.add(&mut acc, &('b', 3));
/// assert_eq!(sum.result(&acc), 5);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Sum<F>(F);

impl<F> Sum<F> {
    pub fn of(value: F) -> Self {
        Sum(value)
    }
}

impl<T, N: Number, F: Fn(&T) -> N + Clone + Send + 'static> Aggregator<T> for Sum<F> {
    type Acc = N;
    type Out = N;
    #[inline]
    fn init(&self) -> N {
        N::default()
    }
    #[inline]
    fn add(&self, acc: &mut N, value: &T) {
        *acc = acc.plus((self.0)(value));
    }
    #[inline]
    fn merge(&self, acc: &mut N, other: &N) {
        *acc = acc.plus(*other);
    }
    #[inline]
    fn result(&self, acc: &N) -> N {
        *acc
    }
}

/// The smallest value taken from each record (`None` for no record).
///
/// ```
/// use weir_time::{Aggregator, Min};
///
/// let min = Min::of(|x: &i32| *x);
/// let mut acc = min.init();
/// for x in [3, 1, 2] { min.add(&mut acc, &x); }
/// assert_eq!(min.result(&acc), Some(1));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Min<F>(F);

impl<F> Min<F> {
    pub fn of(value: F) -> Self {
        Min(value)
    }
}

/// The largest value taken from each record (`None` for no record).
///
/// ```
/// use weir_time::{Aggregator, Max};
///
/// let max = Max::of(|s: &&str| s.len());
/// let mut acc = max.init();
/// for s in ["a", "abc", "ab"] { max.add(&mut acc, &s); }
/// assert_eq!(max.result(&acc), Some(3));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Max<F>(F);

impl<F> Max<F> {
    pub fn of(value: F) -> Self {
        Max(value)
    }
}

#[inline]
fn keep<V: PartialOrd + Clone>(acc: &mut Option<V>, candidate: &V, want_less: bool) {
    let replace = match acc {
        None => true,
        Some(current) => {
            if want_less {
                candidate < current
            } else {
                candidate > current
            }
        }
    };
    if replace {
        *acc = Some(candidate.clone());
    }
}

macro_rules! extreme {
    ($name:ident, $less:expr) => {
        impl<T, V, F> Aggregator<T> for $name<F>
        where
            V: PartialOrd + Clone + StateValue + Data,
            F: Fn(&T) -> V + Clone + Send + 'static,
        {
            type Acc = Option<V>;
            type Out = Option<V>;
            #[inline]
            fn init(&self) -> Option<V> {
                None
            }
            #[inline]
            fn add(&self, acc: &mut Option<V>, value: &T) {
                keep(acc, &(self.0)(value), $less);
            }
            #[inline]
            fn merge(&self, acc: &mut Option<V>, other: &Option<V>) {
                if let Some(v) = other {
                    keep(acc, v, $less);
                }
            }
            #[inline]
            fn result(&self, acc: &Option<V>) -> Option<V> {
                acc.clone()
            }
        }
    };
}
extreme!(Min, true);
extreme!(Max, false);

/// The mean of a number taken from each record (`None` for no record).
///
/// ```
/// use weir_time::{Aggregator, Avg};
///
/// let avg = Avg::of(|x: &i64| *x);
/// let mut acc = avg.init();
/// for x in [1, 2, 6] { avg.add(&mut acc, &x); }
/// assert_eq!(avg.result(&acc), Some(3.0));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Avg<F>(F);

impl<F> Avg<F> {
    pub fn of(value: F) -> Self {
        Avg(value)
    }
}

impl<T, N: Number, F: Fn(&T) -> N + Clone + Send + 'static> Aggregator<T> for Avg<F> {
    /// (sum, count)
    type Acc = (f64, u64);
    type Out = Option<f64>;
    #[inline]
    fn init(&self) -> (f64, u64) {
        (0.0, 0)
    }
    #[inline]
    fn add(&self, acc: &mut (f64, u64), value: &T) {
        acc.0 += (self.0)(value).to_f64();
        acc.1 += 1;
    }
    #[inline]
    fn merge(&self, acc: &mut (f64, u64), other: &(f64, u64)) {
        acc.0 += other.0;
        acc.1 += other.1;
    }
    fn result(&self, acc: &(f64, u64)) -> Option<f64> {
        (acc.1 > 0).then(|| acc.0 / acc.1 as f64)
    }
}

/// Combines records pairwise with a user function (`None` for no record). The function
/// should be associative: partial results are combined in event-time order, but the order of
/// records within a partial result is their arrival order.
///
/// ```
/// use weir_time::{Aggregator, Reduce};
///
/// let longest = Reduce::new(|a: &String, b: &String| if b.len() > a.len() { b.clone() } else { a.clone() });
/// let mut acc = longest.init();
/// for s in ["ab", "abc", "a"] { longest.add(&mut acc, &s.to_string()); }
/// assert_eq!(longest.result(&acc).as_deref(), Some("abc"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Reduce<F>(F);

impl<F> Reduce<F> {
    pub fn new(reduce: F) -> Self {
        Reduce(reduce)
    }
}

impl<T, F> Aggregator<T> for Reduce<F>
where
    T: StateValue + Data,
    F: Fn(&T, &T) -> T + Clone + Send + 'static,
{
    type Acc = Option<T>;
    type Out = Option<T>;
    #[inline]
    fn init(&self) -> Option<T> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<T>, value: &T) {
        *acc = Some(match acc.take() {
            None => value.clone(),
            Some(a) => (self.0)(&a, value),
        });
    }
    fn merge(&self, acc: &mut Option<T>, other: &Option<T>) {
        if let Some(v) = other {
            self.add(acc, v);
        }
    }
    fn result(&self, acc: &Option<T>) -> Option<T> {
        acc.clone()
    }
}

// A tuple of aggregators is an aggregator of tuples (see the module documentation).
macro_rules! tuple {
    ($($a:ident $i:tt),+) => {
        impl<T, $($a: Aggregator<T>),+> Aggregator<T> for ($($a,)+) {
            type Acc = ($($a::Acc,)+);
            type Out = ($($a::Out,)+);
            #[inline]
            fn init(&self) -> Self::Acc {
                ($(self.$i.init(),)+)
            }
            #[inline]
            fn add(&self, acc: &mut Self::Acc, value: &T) {
                $(self.$i.add(&mut acc.$i, value);)+
            }
            #[inline]
            fn merge(&self, acc: &mut Self::Acc, other: &Self::Acc) {
                $(self.$i.merge(&mut acc.$i, &other.$i);)+
            }
            #[inline]
            fn result(&self, acc: &Self::Acc) -> Self::Out {
                ($(self.$i.result(&acc.$i),)+)
            }
        }
    };
}
tuple!(A 0, B 1);
tuple!(A 0, B 1, C 2);
tuple!(A 0, B 1, C 2, D 3);

#[cfg(test)]
mod tests {
    use super::*;

    fn run<A: Aggregator<i64>>(agg: &A, values: &[i64]) -> A::Acc {
        let mut acc = agg.init();
        for v in values {
            agg.add(&mut acc, v);
        }
        acc
    }

    /// Aggregating in two parts and merging gives what aggregating everything gives.
    fn merge_agrees<A>(agg: A)
    where
        A: Aggregator<i64>,
        A::Out: PartialEq + std::fmt::Debug,
    {
        let all = [4, -2, 9, 9, 0, 3];
        let whole = agg.result(&run(&agg, &all));
        let mut left = run(&agg, &all[..2]);
        agg.merge(&mut left, &run(&agg, &all[2..]));
        assert_eq!(agg.result(&left), whole);
        let mut empty = agg.init();
        agg.merge(&mut empty, &run(&agg, &all));
        assert_eq!(agg.result(&empty), whole);
    }

    #[test]
    fn merging_partial_results_equals_aggregating_everything() {
        merge_agrees(Count);
        merge_agrees(Sum::of(|x: &i64| *x));
        merge_agrees(Min::of(|x: &i64| *x));
        merge_agrees(Max::of(|x: &i64| *x));
        merge_agrees(Avg::of(|x: &i64| *x));
        merge_agrees(Reduce::new(|a: &i64, b: &i64| a.max(b).to_owned()));
        merge_agrees((Count, Sum::of(|x: &i64| *x), Max::of(|x: &i64| *x)));
    }

    #[test]
    fn empty_windows_have_no_min_max_or_avg() {
        assert_eq!(Min::of(|x: &i64| *x).result(&None), None);
        assert_eq!(Avg::of(|x: &i64| *x).result(&(0.0, 0)), None);
        let (sum, avg) = (Sum::of(|x: &i64| *x), Avg::of(|x: &i64| *x));
        assert_eq!(sum.result(&run(&sum, &[1, 2])), 3);
        assert_eq!(avg.result(&run(&avg, &[1, 2])), Some(1.5));
    }
}
