//! LifeReflector: keeps Redis cache entries coherent with PostgreSQL by replaying the
//! change-log outbox under an advisory-lock leader. Built in the cache issue.
