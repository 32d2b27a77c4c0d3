//! The error of the claims and dedupe stores, below both ports and their adapters.

/// An error of the claims or the dedupe store. The text says which store (`claims table
/// s3-import-claims`, `dedupe table …`) and the cause (connection refused, throttled, missing
/// table, …); see `crate::dynamo::store_error_of`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or answered with a retryable error.
    #[error("{0}")]
    Unavailable(String),
    /// The store refused the request for good (permissions, missing table, …).
    #[error("{0}")]
    Refused(String),
}

/// DynamoDB capacity units a store's requests consumed, counted request by request by the
/// on-demand rules (a write: 1 unit per KiB of the item, a failed condition included; a
/// transaction's items twice; a consistent read: 1 unit per 4 KiB, an item not found
/// included). The local stack does not report capacity for every request (PartiQL batches,
/// failed conditions), so the figures are counted, not read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capacity {
    pub read_units: u64,
    pub write_units: u64,
}

/// us-east-1 on-demand prices as published on 2026-12-01 (since the November 2024 cut): $ per
/// million write request units and per million read request units.
pub const WRITE_UNIT_DOLLARS: f64 = 0.625;
pub const READ_UNIT_DOLLARS: f64 = 0.125;

impl Capacity {
    /// What these units cost at on-demand prices ([`WRITE_UNIT_DOLLARS`], [`READ_UNIT_DOLLARS`]).
    pub fn dollars(&self) -> f64 {
        (self.write_units as f64 * WRITE_UNIT_DOLLARS + self.read_units as f64 * READ_UNIT_DOLLARS)
            / 1e6
    }

    /// What was consumed since `before`.
    pub fn since(self, before: Capacity) -> Capacity {
        Capacity {
            read_units: self.read_units.saturating_sub(before.read_units),
            write_units: self.write_units.saturating_sub(before.write_units),
        }
    }
}

impl std::ops::Add for Capacity {
    type Output = Capacity;

    fn add(self, other: Capacity) -> Capacity {
        Capacity {
            read_units: self.read_units + other.read_units,
            write_units: self.write_units + other.write_units,
        }
    }
}

/// The capacity units of one object's import, counted as the adapters make their requests
/// (see [`metered`]): exact while several objects are imported at once, where the deltas of
/// an adapter's running totals would mix them.
#[derive(Debug, Default)]
pub(crate) struct ObjectMeter {
    read: std::sync::atomic::AtomicU64,
    write: std::sync::atomic::AtomicU64,
}

tokio::task_local! {
    static OBJECT: std::sync::Arc<ObjectMeter>;
}

/// Runs one object's import with a meter of its own: the adapters' requests made within it
/// (and within the tasks it starts with [`carried`]) are charged to it.
pub(crate) async fn metered<F: std::future::Future>(f: F) -> F::Output {
    OBJECT.scope(Default::default(), f).await
}

/// A future that a task started by a metered import runs, charging the same meter.
pub(crate) fn carried<F: std::future::Future>(
    f: F,
) -> impl std::future::Future<Output = F::Output> {
    let meter = OBJECT.try_with(|m| m.clone()).ok();
    async move {
        match meter {
            Some(m) => OBJECT.scope(m, f).await,
            None => f.await,
        }
    }
}

/// Charges units to the import running now, if it is metered.
pub(crate) fn charge(read_units: u64, write_units: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let _ = OBJECT.try_with(|m| {
        m.read.fetch_add(read_units, Relaxed);
        m.write.fetch_add(write_units, Relaxed);
    });
}

/// The units charged so far to the import running now (zero outside a metered one).
pub(crate) fn charged() -> Capacity {
    use std::sync::atomic::Ordering::Relaxed;
    OBJECT
        .try_with(|m| Capacity {
            read_units: m.read.load(Relaxed),
            write_units: m.write.load(Relaxed),
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn units_are_charged_to_the_import_they_are_made_in_and_its_tasks() {
        charge(5, 5); // outside any import: charged to none
        let (a, b) = tokio::join!(
            metered(async {
                charge(1, 2);
                tokio::spawn(carried(async { charge(0, 3) })).await.unwrap();
                tokio::task::yield_now().await;
                charged()
            }),
            metered(async {
                charge(10, 0);
                tokio::task::yield_now().await;
                charged()
            }),
        );
        assert_eq!((a.read_units, a.write_units), (1, 5));
        assert_eq!((b.read_units, b.write_units), (10, 0));
        assert_eq!(charged(), Capacity::default());
    }
}
