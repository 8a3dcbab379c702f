//! The GPU scheduler: one per server, shared by every user's [`crate::KernelManager`].
//!
//! It owns the pure [`Allocator`] behind a lock, turns wall time into the allocator's
//! [`Timestamp`] (milliseconds since the Unix epoch), runs a task that sends [`Event::Tick`] at
//! [`Allocator::next_deadline`], and hands each decision to the kernel it is about as a
//! [`GpuNotice`] on that kernel's channel. It never calls into a kernel while holding its lock:
//! the kernel's own driver task applies the notice (launch, update the queue display, warn, stop).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commonlab_allocator::{
    Activity, Allocator, Decision, Event, GpuId, Inventory, ReclaimReason, RefuseReason, RequestId,
    Settings, StartRequest, StopReason, TierName, Timestamp, UsageRecord, UserId, WarnReason,
};
pub use commonlab_allocator::{AllocatorConfig, PolicyKind, TierConfig, TiersConfig};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::{ErrorKind, ManagerError};

/// One GPU the server hands out, from NVML or from the configured (fake) inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// The driver's index: what `CUDA_VISIBLE_DEVICES` names.
    pub index: u32,
    /// The model, for display.
    pub name: String,
    /// Its memory, for display.
    pub memory_bytes: u64,
    /// Its device node (`/dev/nvidia<index>`), bound into a sandboxed kernel that holds it.
    pub node: Option<PathBuf>,
}

/// What the scheduler is built from.
#[derive(Debug, Clone)]
pub struct GpuSchedulerConfig {
    /// The `[allocator]` settings (policy, warning, queue bounds).
    pub allocator: AllocatorConfig,
    /// Tiers by name; users' tiers must be among them.
    pub tiers: TiersConfig,
    /// The GPUs present.
    pub devices: Vec<GpuDevice>,
    /// Device nodes every GPU kernel needs besides its GPUs' own (`/dev/nvidiactl`,
    /// `/dev/nvidia-uvm`); those missing on the host are skipped.
    pub shared_nodes: Vec<PathBuf>,
}

/// What a kernel with a GPU request is told, in the order the allocator decided it.
#[derive(Debug)]
pub(crate) enum GpuNotice {
    /// GPUs were granted: launch the runtime with them, once every `after` has fired (the
    /// kernels the GPUs were reclaimed from have stopped).
    Placed {
        devices: Vec<GpuDevice>,
        after: Vec<watch::Receiver<bool>>,
    },
    /// The request moved in the queue.
    Queued(QueuePlace),
    /// The kernel's GPUs may be taken at `at`.
    Warn {
        at: SystemTime,
        reason: WarnReason,
        waiting: usize,
    },
    /// The GPUs were taken: stop the kernel, then send `true` on `released` (dropping it
    /// does as well).
    Reclaimed {
        reason: ReclaimReason,
        released: watch::Sender<bool>,
    },
    /// The kernel must stop.
    Stopped { reason: StopReason },
    /// The queued request was refused after all.
    Refused { message: String },
}

/// Where a queued request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueuePlace {
    pub(crate) position: u32,
    pub(crate) estimate: Option<SystemTime>,
}

/// The answer to a GPU request.
#[derive(Debug)]
pub(crate) enum Admission {
    Placed(Vec<GpuDevice>),
    Queued(QueuePlace),
}

struct SchedulerState {
    allocator: Allocator,
    next_request: u64,
    holders: HashMap<RequestId, mpsc::UnboundedSender<GpuNotice>>,
}

/// The server's GPUs and who holds or waits for them.
pub struct GpuScheduler {
    state: Mutex<SchedulerState>,
    devices: Vec<GpuDevice>,
    shared_nodes: Vec<PathBuf>,
    wake: Arc<Notify>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GpuScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuScheduler")
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

/// Wall time as the allocator counts it.
fn now() -> Timestamp {
    timestamp(SystemTime::now())
}

fn timestamp(at: SystemTime) -> Timestamp {
    Timestamp::from_millis(
        at.duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

fn system_time(at: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.as_millis())
}

impl GpuScheduler {
    /// Validates the settings and the inventory. The tick task starts with
    /// [`GpuScheduler::spawn_ticker`].
    pub fn new(config: GpuSchedulerConfig) -> Result<Arc<GpuScheduler>, String> {
        let settings =
            Settings::new(config.allocator, &config.tiers).map_err(|e| format!("[gpu] {e}"))?;
        let inventory = Inventory::new(
            config
                .devices
                .iter()
                .map(|device| commonlab_allocator::Gpu {
                    id: GpuId(device.index),
                    uuid: format!("GPU-{}", device.index),
                    model: device.name.clone(),
                })
                .collect(),
        )
        .map_err(|e| format!("[gpu] {e}"))?;
        let mut devices = config.devices;
        devices.sort_by_key(|device| device.index);
        Ok(Arc::new(GpuScheduler {
            state: Mutex::new(SchedulerState {
                allocator: Allocator::new(settings, inventory),
                next_request: 1,
                holders: HashMap::new(),
            }),
            devices,
            shared_nodes: config.shared_nodes,
            wake: Arc::new(Notify::new()),
            ticker: Mutex::new(None),
        }))
    }

    /// The GPUs present, by index.
    pub fn devices(&self) -> &[GpuDevice] {
        &self.devices
    }

    /// Whether `tier` is configured.
    pub fn knows_tier(&self, tier: &str) -> bool {
        self.state()
            .allocator
            .settings()
            .tiers
            .contains_key(&TierName::new(tier))
    }

    /// The device nodes a kernel holding `devices` gets: theirs and the shared ones present.
    pub(crate) fn nodes_for(&self, devices: &[GpuDevice]) -> Vec<PathBuf> {
        if devices.is_empty() {
            return Vec::new();
        }
        let mut nodes: Vec<PathBuf> = devices.iter().filter_map(|d| d.node.clone()).collect();
        nodes.extend(self.shared_nodes.iter().filter(|n| n.exists()).cloned());
        nodes
    }

    /// Starts the task that ticks the allocator at its deadlines. The task holds the scheduler
    /// weakly and ends with it; [`GpuScheduler::shutdown`] stops it sooner.
    pub fn spawn_ticker(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let wake = self.wake.clone();
        let handle = tokio::spawn(tick_loop(weak, wake));
        if let Some(old) = self.ticker().replace(handle) {
            old.abort();
        }
    }

    /// Stops the tick task.
    pub fn shutdown(&self) {
        if let Some(handle) = self.ticker().take() {
            handle.abort();
        }
    }

    fn ticker(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.ticker.lock().expect("ticker lock is never poisoned")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SchedulerState> {
        self.state.lock().expect("scheduler lock is never poisoned")
    }

    /// Asks for `gpus` GPUs for a new kernel of `user`. Later decisions about the request
    /// arrive on `notices`.
    pub(crate) fn request(
        &self,
        user: &str,
        tier: &str,
        gpus: u32,
        notices: mpsc::UnboundedSender<GpuNotice>,
    ) -> Result<(RequestId, Admission), ManagerError> {
        let mut state = self.state();
        let request = RequestId(state.next_request);
        state.next_request += 1;
        let decisions = state.allocator.handle(
            now(),
            Event::StartRequested(StartRequest {
                request,
                user: UserId::new(user),
                tier: TierName::new(tier),
                gpus,
            }),
        );
        let mut admission = None;
        let mut others = Vec::new();
        for decision in decisions {
            match decision {
                Decision::Place { request: r, gpus } if r == request => {
                    admission = Some(Ok(Admission::Placed(self.devices_of(&gpus))));
                }
                Decision::Queue {
                    request: r,
                    position,
                    estimate,
                }
                | Decision::QueuePositionChanged {
                    request: r,
                    position,
                    estimate,
                } if r == request => {
                    admission = Some(Ok(Admission::Queued(QueuePlace {
                        position,
                        estimate: estimate.map(system_time),
                    })));
                }
                Decision::Refuse { request: r, reason } if r == request => {
                    admission = Some(Err(refusal(&reason)));
                }
                other => others.push(other),
            }
        }
        let admission = admission.unwrap_or_else(|| {
            Err(ManagerError::internal(
                "gpu_scheduler_failed",
                "The GPU scheduler did not decide on the request",
            ))
        });
        if admission.is_ok() {
            state.holders.insert(request, notices);
        }
        self.dispatch(&mut state, others);
        drop(state);
        self.wake.notify_one();
        admission.map(|admission| (request, admission))
    }

    /// A placed kernel became busy or idle.
    pub(crate) fn activity(&self, request: RequestId, activity: Activity) {
        self.handle(Event::Activity { request, activity });
    }

    /// The kernel ended or left the queue; its GPUs (if any) go to whoever waits.
    pub(crate) fn exited(&self, request: RequestId) {
        let mut state = self.state();
        state.holders.remove(&request);
        let decisions = state.allocator.handle(now(), Event::Exited { request });
        self.dispatch(&mut state, decisions);
        drop(state);
        self.wake.notify_one();
    }

    /// Replays a user's GPU use from the usage ledger into the allocator, so fair-share order
    /// and weekly quotas survive a restart. The ledger keeps totals per UTC day, not intervals:
    /// each day's GPU-seconds count as one GPU held from that day's midnight (capped at now).
    pub fn load_usage(&self, user: &str, tier: &str, days: &[(String, f64)]) {
        let now_ts = now();
        let records: Vec<UsageRecord> = days
            .iter()
            .filter(|(_, seconds)| *seconds > 0.0)
            .filter_map(|(day, seconds)| {
                let midnight = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .ok()?
                    .and_hms_opt(0, 0, 0)?
                    .and_utc()
                    .timestamp_millis();
                let start = Timestamp::from_millis(u64::try_from(midnight).ok()?);
                let end = Timestamp::from_millis(
                    (start.as_millis() + (seconds * 1000.0) as u64).min(now_ts.as_millis()),
                );
                (end > start).then_some(UsageRecord {
                    start,
                    end,
                    gpus: 1,
                })
            })
            .collect();
        if records.is_empty() {
            return;
        }
        self.handle(Event::UsageLoaded {
            user: UserId::new(user),
            tier: TierName::new(tier),
            records,
        });
    }

    /// Time passed.
    fn tick(&self) {
        self.handle(Event::Tick);
    }

    fn handle(&self, event: Event) {
        let mut state = self.state();
        let decisions = state.allocator.handle(now(), event);
        self.dispatch(&mut state, decisions);
        drop(state);
        self.wake.notify_one();
    }

    fn devices_of(&self, gpus: &[GpuId]) -> Vec<GpuDevice> {
        gpus.iter()
            .filter_map(|id| self.devices.iter().find(|d| d.index == id.0).cloned())
            .collect()
    }

    /// Sends each decision to its kernel. Only channel sends happen under the lock.
    fn dispatch(&self, state: &mut SchedulerState, decisions: Vec<Decision>) {
        // GPUs reclaimed in this batch are placed only once their kernel has stopped.
        let mut released: HashMap<u32, watch::Receiver<bool>> = HashMap::new();
        let waiting = state.allocator.queue_len();
        for decision in decisions {
            tracing::debug!(%decision, "gpu scheduler decided");
            let request = decision.request();
            let notice = match decision {
                Decision::Place { gpus, .. } => GpuNotice::Placed {
                    after: gpus
                        .iter()
                        .filter_map(|g| released.get(&g.0).cloned())
                        .collect(),
                    devices: self.devices_of(&gpus),
                },
                Decision::Queue {
                    position, estimate, ..
                }
                | Decision::QueuePositionChanged {
                    position, estimate, ..
                } => GpuNotice::Queued(QueuePlace {
                    position,
                    estimate: estimate.map(system_time),
                }),
                Decision::Refuse { reason, .. } => GpuNotice::Refused {
                    message: reason.message(),
                },
                Decision::Warn { at, reason, .. } => GpuNotice::Warn {
                    at: system_time(at),
                    reason,
                    waiting,
                },
                Decision::Reclaim { gpus, reason, .. } => {
                    let (tx, rx) = watch::channel(false);
                    for gpu in &gpus {
                        released.insert(gpu.0, rx.clone());
                    }
                    GpuNotice::Reclaimed {
                        reason,
                        released: tx,
                    }
                }
                Decision::Stop { reason, .. } => GpuNotice::Stopped { reason },
            };
            let forget = matches!(
                notice,
                GpuNotice::Reclaimed { .. } | GpuNotice::Stopped { .. } | GpuNotice::Refused { .. }
            );
            let sent = match state.holders.get(&request) {
                Some(holder) => holder.send(notice).is_ok(),
                None => false,
            };
            if forget {
                state.holders.remove(&request);
            } else if !sent {
                // The kernel is gone without saying so: give its place or GPUs back.
                state.holders.remove(&request);
                tracing::warn!(%request, "a GPU decision found no kernel; releasing it");
                let more = state.allocator.handle(now(), Event::Exited { request });
                self.dispatch(state, more);
            }
        }
    }
}

impl Drop for GpuScheduler {
    fn drop(&mut self) {
        if let Ok(mut ticker) = self.ticker.lock() {
            if let Some(handle) = ticker.take() {
                handle.abort();
            }
        }
    }
}

async fn tick_loop(scheduler: Weak<GpuScheduler>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        let deadline = match scheduler.upgrade() {
            Some(scheduler) => scheduler.state().allocator.next_deadline(),
            None => return,
        };
        match deadline {
            Some(at) => {
                let wait = Duration::from_millis(at.as_millis().saturating_sub(now().as_millis()))
                    .max(Duration::from_millis(10));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {
                        match scheduler.upgrade() {
                            Some(scheduler) => scheduler.tick(),
                            None => return,
                        }
                    }
                    _ = notified => {}
                }
            }
            None => notified.await,
        }
    }
}

/// A refused request as the edge answers it: the allocator's code and sentence.
fn refusal(reason: &RefuseReason) -> ManagerError {
    let kind = match reason {
        RefuseReason::DuplicateRequest => ErrorKind::Internal,
        // The account is fine; the operator has not given its tier GPU limits.
        RefuseReason::UnknownTier => ErrorKind::Forbidden,
        RefuseReason::QueueFull { .. } | RefuseReason::NoGpuAvailable => ErrorKind::Unavailable,
        _ => ErrorKind::Conflict,
    };
    // The allocator's timestamps are for machines; people get a date and how long to wait.
    let message = match reason {
        RefuseReason::GpuQuotaExhausted { retry_at: Some(at) } => {
            let when = system_time(*at);
            format!(
                "you used your weekly GPU hours; more become available at {} (in {}). CPU kernels still start",
                chrono::DateTime::<chrono::Utc>::from(when).format("%Y-%m-%d %H:%M UTC"),
                until(when)
            )
        }
        RefuseReason::UnknownTier => "your account's tier has no GPU limits configured ([gpu.tiers]); ask an administrator to configure it or move you to a tier that has them. CPU kernels still start".to_owned(),
        other => other.message(),
    };
    let mut error = ManagerError::new(
        kind,
        reason.code(),
        format!("No GPU kernel was started: {message}."),
    );
    error.short_message = Some("GPU kernel refused".into());
    error
}

/// "3 minutes", "45 seconds": how long until `at`, rounded up.
pub(crate) fn until(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        .ceil() as u64;
    if secs < 60 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else if secs < 2 * 3600 {
        let minutes = secs.div_ceil(60);
        format!("{minutes} minutes")
    } else {
        format!("{} hours", secs.div_ceil(3600))
    }
}

/// `2026-05-01 14:05 UTC`.
pub(crate) fn clock(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

/// The sentence a user reads while their kernel waits.
pub(crate) fn queue_text(place: QueuePlace) -> String {
    let estimate = match place.estimate {
        Some(at) => format!("estimated start: by {} (in about {})", clock(at), until(at)),
        None => "no estimate yet".to_owned(),
    };
    format!(
        "Waiting for a GPU: position {} in the queue, {estimate}. This cell runs as soon as a GPU is granted; there is no need to run it again.",
        place.position
    )
}

/// The warning before an idle kernel's GPU is reclaimed, or before its lifetime ends.
pub(crate) fn warn_text(at: SystemTime, reason: WarnReason, waiting: usize) -> String {
    match reason {
        WarnReason::IdleReclaim => {
            let because = match waiting {
                0 => "because all GPUs are in use and someone may need it".to_owned(),
                1 => "because another request is waiting for a GPU".to_owned(),
                n => format!("because {n} requests are waiting for a GPU"),
            };
            format!(
                "Commonlab: this kernel's GPU will be reclaimed in {} unless it runs something, {because}. Reclaiming stops the kernel; your files stay, variables in memory are lost.",
                until(at)
            )
        }
        WarnReason::Lifetime => format!(
            "Commonlab: this kernel reaches its GPU time limit in {} and will then be stopped; save your work.",
            until(at)
        ),
    }
}

/// Why a kernel lost its GPU, for its notebook.
pub(crate) fn reclaim_text(reason: ReclaimReason) -> String {
    let why = match reason {
        ReclaimReason::IdleContended => {
            "it sat idle past its tier's limit while someone with a smaller share of the GPUs waited"
        }
        ReclaimReason::IdleTimeout => "it sat idle past its tier's limit",
        ReclaimReason::GpuRemoved => "the GPU left the server",
    };
    format!("Commonlab: this kernel's GPU was reclaimed because {why}, and the kernel was stopped. Start a GPU kernel again to queue for a GPU.")
}

/// Why a GPU kernel was stopped, for its notebook.
pub(crate) fn stop_text(reason: StopReason) -> String {
    let why = match reason {
        StopReason::LifetimeReached => "it reached its tier's GPU time limit",
        StopReason::GpuQuotaExhausted => "your weekly GPU hours are used up",
    };
    format!("Commonlab: this kernel was stopped because {why}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(gpus: u32) -> Arc<GpuScheduler> {
        let mut tiers = TiersConfig::new();
        tiers.insert("free".into(), TierConfig::default());
        GpuScheduler::new(GpuSchedulerConfig {
            allocator: AllocatorConfig::default(),
            tiers,
            devices: (0..gpus)
                .map(|index| GpuDevice {
                    index,
                    name: "Fake GPU".into(),
                    memory_bytes: 1 << 30,
                    node: None,
                })
                .collect(),
            shared_nodes: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn usage_from_the_ledger_counts_after_a_restart() {
        let scheduler = scheduler(1);
        let today = chrono::Utc::now().date_naive().to_string();
        let yesterday = (chrono::Utc::now().date_naive() - chrono::Days::new(1)).to_string();
        // 41 GPU-hours over two days: past the default tier's 40 a week.
        scheduler.load_usage(
            "alice",
            "free",
            &[
                (yesterday, 40.0 * 3600.0),
                (today, 3600.0),
                ("not a day".into(), 5.0),
            ],
        );
        scheduler.load_usage("bob", "free", &[]);
        let now = now();
        let alice = scheduler
            .state()
            .allocator
            .decayed_usage(&UserId::new("alice"), now);
        let bob = scheduler
            .state()
            .allocator
            .decayed_usage(&UserId::new("bob"), now);
        assert!(alice > 0.0 && bob == 0.0, "alice {alice}, bob {bob}");
        let (tx, _rx) = mpsc::unbounded_channel();
        let refused = scheduler.request("alice", "free", 1, tx);
        let error = refused.expect_err("alice is past her weekly GPU-hours");
        assert_eq!(error.code, "gpu_quota_exhausted");
        assert!(
            error.message.contains("UTC (in "),
            "the user is told when, in words: {}",
            error.message
        );
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_, admission) = scheduler.request("bob", "free", 1, tx).unwrap();
        assert!(matches!(admission, Admission::Placed(_)));
    }

    #[test]
    fn a_second_request_queues_and_is_placed_when_the_first_exits() {
        let scheduler = scheduler(1);
        let (tx, _rx_a) = mpsc::unbounded_channel();
        let (a, admission) = scheduler.request("alice", "free", 1, tx).unwrap();
        assert!(matches!(admission, Admission::Placed(ref d) if d[0].index == 0));
        let (tx, mut rx_b) = mpsc::unbounded_channel();
        let (_, admission) = scheduler.request("bob", "free", 1, tx).unwrap();
        assert!(matches!(
            admission,
            Admission::Queued(QueuePlace { position: 1, .. })
        ));
        scheduler.exited(a);
        match rx_b.try_recv().unwrap() {
            GpuNotice::Placed { devices, after } => {
                assert_eq!(devices[0].index, 0);
                assert!(after.is_empty());
            }
            other => panic!("expected a placement, got {other:?}"),
        }
    }

    #[test]
    fn an_unknown_tier_is_refused_with_its_code() {
        let scheduler = scheduler(1);
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = scheduler.request("carol", "gold", 1, tx).unwrap_err();
        assert_eq!(err.code, "unknown_tier");
        assert_eq!(err.kind, ErrorKind::Forbidden, "not a server error");
        assert!(
            err.message.contains("ask an administrator"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_queued_request_that_leaves_frees_its_place() {
        let scheduler = scheduler(1);
        let (tx, _rx_a) = mpsc::unbounded_channel();
        scheduler.request("alice", "free", 1, tx).unwrap();
        let (tx, _rx_b) = mpsc::unbounded_channel();
        let (b, _) = scheduler.request("bob", "free", 1, tx).unwrap();
        let (tx, mut rx_c) = mpsc::unbounded_channel();
        let (_, admission) = scheduler.request("carol", "free", 1, tx).unwrap();
        assert!(matches!(
            admission,
            Admission::Queued(QueuePlace { position: 2, .. })
        ));
        scheduler.exited(b);
        assert!(matches!(
            rx_c.try_recv().unwrap(),
            GpuNotice::Queued(QueuePlace { position: 1, .. })
        ));
    }
}
