//! [`Fallback`]: try alternatives in order until one succeeds.

use crate::error::{AllFailed, AlternativeFailure, ConfigError, Error};
use crate::policy::Policy;
use std::fmt;
use std::future::Future;

/// Alternatives (endpoints, replicas, strategies) tried in order until one succeeds.
///
/// Each alternative runs under its own [`Policy`], so it has its own retry budget and, if the
/// policy has one, its own circuit breaker: an alternative whose breaker is open is skipped at
/// once. When every alternative fails, the error is [`Error::AllFailed`], carrying each
/// alternative's error in the order they were tried.
///
/// ```
/// use weir_resilience::Fallback;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let endpoints = Fallback::<_, std::io::Error>::new(["primary", "replica"])?;
/// let body = endpoints
///     .call(|endpoint| async move {
///         match *endpoint {
///             "primary" => Err(std::io::Error::other(format!("{endpoint} is down"))),
///             _ => Ok(42),
///         }
///     })
///     .await?;
/// assert_eq!(body, 42);
/// # Ok::<_, Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct Fallback<A, E> {
    alternatives: Vec<Alternative<A, E>>,
}

struct Alternative<A, E> {
    value: A,
    label: String,
    policy: Policy<E>,
}

impl<A: fmt::Debug, E> fmt::Debug for Fallback<A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.alternatives
                    .iter()
                    .map(|a| (&a.label, &a.value, &a.policy)),
            )
            .finish()
    }
}

impl<A, E> Fallback<A, E> {
    /// Alternatives labelled by their `Display`, each under a default (single-attempt) policy.
    /// An empty list is [`ConfigError::NoAlternatives`].
    pub fn new(alternatives: impl IntoIterator<Item = A>) -> Result<Self, ConfigError>
    where
        A: fmt::Display,
    {
        Self::labelled(alternatives.into_iter().map(|a| (a.to_string(), a)))
    }

    /// Alternatives with explicit labels (used in the all-failed error's message).
    pub fn labelled<L: Into<String>>(
        alternatives: impl IntoIterator<Item = (L, A)>,
    ) -> Result<Self, ConfigError> {
        let alternatives: Vec<_> = alternatives
            .into_iter()
            .map(|(label, value)| Alternative {
                value,
                label: label.into(),
                policy: Policy::default(),
            })
            .collect();
        if alternatives.is_empty() {
            return Err(ConfigError::NoAlternatives);
        }
        Ok(Fallback { alternatives })
    }

    /// Gives each alternative the policy `make` returns for it. Call `make` so that it builds a
    /// new policy each time (e.g. `|_| config.build()`): clones of one policy would share one
    /// breaker between all alternatives.
    pub fn with_policies(
        mut self,
        mut make: impl FnMut(&A) -> Result<Policy<E>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        for alternative in &mut self.alternatives {
            alternative.policy = make(&alternative.value)?;
        }
        Ok(self)
    }

    /// The alternatives' policies, in order (to read their breakers and counters).
    pub fn policies(&self) -> impl Iterator<Item = (&A, &Policy<E>)> {
        self.alternatives.iter().map(|a| (&a.value, &a.policy))
    }

    /// Calls `operation` with each alternative in turn, under that alternative's policy, and
    /// returns the first success.
    pub async fn call<'a, T, F, Fut>(&'a self, mut operation: F) -> Result<T, Error<E>>
    where
        F: FnMut(&'a A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures = Vec::new();
        for (index, alternative) in self.alternatives.iter().enumerate() {
            match alternative
                .policy
                .call(|| operation(&alternative.value))
                .await
            {
                Ok(value) => {
                    if index > 0 {
                        tracing::debug!(
                            target: "weir_resilience::fallback",
                            alternative = alternative.label.as_str(),
                            index,
                            "fallback alternative succeeded"
                        );
                    }
                    return Ok(value);
                }
                Err(error) => {
                    tracing::debug!(
                        target: "weir_resilience::fallback",
                        alternative = alternative.label.as_str(),
                        index,
                        skipped = error.is_circuit_open(),
                        "fallback alternative failed"
                    );
                    failures.push(AlternativeFailure {
                        index,
                        label: alternative.label.clone(),
                        error,
                    });
                }
            }
        }
        Err(Error::AllFailed(AllFailed { failures }))
    }
}
