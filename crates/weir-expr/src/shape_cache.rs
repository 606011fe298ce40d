//! Field positions per record shape, resolved once per shape instead of once per record.

use std::sync::{Arc, OnceLock};
use weir_types::{Record, Shape, Value};

/// How many distinct shapes an expression remembers. Streams decoded by one
/// `RecordDecoder` share a single shape while their lines look alike, so a few slots cover
/// the common cases; records of further shapes fall back to looking fields up by name.
const SLOTS: usize = 8;

/// A remembered shape and the position of each read field in it.
type Slot = (Arc<Shape>, Box<[u32]>);

/// Marks a field the shape does not have.
pub(crate) const ABSENT: u32 = u32::MAX;

/// The fields an expression reads, and where they sit in the shapes seen so far.
///
/// Reading is lock-free: each slot is filled at most once (`OnceLock`) and keeps its shape
/// alive, so comparing `Arc` pointers is sound (a freed shape's address cannot come back
/// while we hold it).
pub(crate) struct ShapeCache {
    names: Vec<Arc<str>>,
    slots: [OnceLock<Slot>; SLOTS],
}

impl ShapeCache {
    pub(crate) fn new(names: Vec<Arc<str>>) -> Self {
        ShapeCache {
            names,
            slots: Default::default(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The position, in `shape`, of every field the expression reads (`ABSENT` when missing),
    /// or `None` when every slot holds another shape.
    #[inline]
    pub(crate) fn resolve(&self, shape: &Arc<Shape>) -> Option<&[u32]> {
        if self.names.is_empty() {
            return None;
        }
        for slot in &self.slots {
            let (cached, positions) = match slot.get() {
                Some(entry) => entry,
                None => slot.get_or_init(|| (shape.clone(), self.positions(shape))),
            };
            if Arc::ptr_eq(cached, shape) {
                return Some(positions);
            }
        }
        None
    }

    fn positions(&self, shape: &Shape) -> Box<[u32]> {
        self.names
            .iter()
            .map(|name| {
                shape
                    .index_of(name)
                    .and_then(|i| u32::try_from(i).ok())
                    .unwrap_or(ABSENT)
            })
            .collect()
    }
}

/// What a compiled closure sees: the record and, when its shape is cached, field positions.
pub(crate) struct Ctx<'r> {
    pub(crate) record: &'r Record,
    pub(crate) positions: Option<&'r [u32]>,
}

impl<'r> Ctx<'r> {
    /// The value of the expression's `slot`-th field, named `name`.
    #[inline]
    pub(crate) fn field(&self, slot: usize, name: &str) -> Option<&'r Value> {
        match self.positions {
            Some(positions) => match positions.get(slot) {
                Some(&ABSENT) | None => None,
                Some(&i) => self.record.get_index(i as usize),
            },
            None => self.record.get(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_each_shape() {
        let cache = ShapeCache::new(vec!["b".into(), "z".into()]);
        let s1 = Arc::new(Shape::new(["a", "b"]));
        let s2 = Arc::new(Shape::new(["b", "z"]));
        assert_eq!(cache.resolve(&s1), Some(&[1, ABSENT][..]));
        assert_eq!(cache.resolve(&s2), Some(&[0, 1][..]));
        // A shape equal to s1 but not the same allocation takes its own slot.
        let s1_again = Arc::new(Shape::new(["a", "b"]));
        assert_eq!(cache.resolve(&s1_again), Some(&[1, ABSENT][..]));
    }

    #[test]
    fn full_cache_falls_back_to_names() {
        let cache = ShapeCache::new(vec!["x".into()]);
        let shapes: Vec<_> = (0..SLOTS).map(|_| Arc::new(Shape::new(["x"]))).collect();
        for s in &shapes {
            assert!(cache.resolve(s).is_some());
        }
        let extra = Arc::new(Shape::new(["y", "x"]));
        assert_eq!(cache.resolve(&extra), None);
        let record =
            Record::with_shape(extra, vec![Value::Int(1), Value::Int(2)]).expect("two values");
        let ctx = Ctx {
            record: &record,
            positions: None,
        };
        assert_eq!(ctx.field(0, "x"), Some(&Value::Int(2)));
    }
}
