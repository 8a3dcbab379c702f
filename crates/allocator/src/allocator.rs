//! The allocator state machine: [`Allocator::handle`] applies one event at `now` and returns
//! the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::config::{IdleRule, PolicyTraits, QueueOrder, Settings, Tier};
use crate::decision::{Decision, ReclaimReason, RefuseReason, StopReason, WarnReason};
use crate::event::{Activity, Event, RequestId, StartRequest, TierName, UsageRecord, UserId};
use crate::inventory::{Gpu, GpuId, Inventory};
use crate::share::{water_level, ShareClaim};
use crate::time::{Timestamp, HOUR_S};
use crate::usage::Usage;

/// GPU-seconds of quota left below which a user counts as out of quota.
const QUOTA_EPSILON_GPU_S: f64 = 0.5;
/// Slack allowed by the invariant check for deadlines rounded to the millisecond.
const QUOTA_SLACK_GPU_S: f64 = 1.0;

/// The allocator. See the crate docs.
#[derive(Debug)]
pub struct Allocator {
    settings: Settings,
    traits: PolicyTraits,
    decay_per_s: f64,
    inventory: Inventory,
    owners: BTreeMap<GpuId, RequestId>,
    kernels: BTreeMap<RequestId, Kernel>,
    queue: BTreeMap<RequestId, Queued>,
    /// The queue in placement order.
    queue_index: BTreeSet<QueueKey>,
    users: BTreeMap<UserId, UserState>,
    reported_positions: BTreeMap<RequestId, u32>,
    now: Timestamp,
    next_seq: u64,
}

#[derive(Clone, Debug)]
struct Kernel {
    user: UserId,
    tier: TierName,
    gpus: Vec<GpuId>,
    placed_at: Timestamp,
    activity: Activity,
    idle_since: Timestamp,
    reclaim_at: Option<Timestamp>,
    lifetime_warned: bool,
}

#[derive(Clone, Debug)]
struct Queued {
    user: UserId,
    tier: TierName,
    gpus: u32,
    seq: u64,
    enqueued_at: Timestamp,
    key: f64,
}

/// A queued request's place in the order: by key (the user's log-normalised decayed usage
/// per weight, or zero for arrival order), then arrival.
#[derive(Clone, Copy, Debug)]
struct QueueKey {
    key: f64,
    seq: u64,
    request: RequestId,
}

impl PartialEq for QueueKey {
    fn eq(&self, other: &QueueKey) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for QueueKey {}

impl PartialOrd for QueueKey {
    fn partial_cmp(&self, other: &QueueKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for QueueKey {
    fn cmp(&self, other: &QueueKey) -> std::cmp::Ordering {
        self.key
            .total_cmp(&other.key)
            .then(self.seq.cmp(&other.seq))
            .then(self.request.cmp(&other.request))
    }
}

#[derive(Clone, Debug)]
struct UserState {
    /// The tier of the user's latest request: its weight and quota apply.
    tier: TierName,
    usage: Usage,
    kernels: BTreeSet<RequestId>,
    queued: BTreeSet<RequestId>,
    gpus_queued: u32,
}

/// A placed kernel as the allocator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelView {
    /// Its request id.
    pub request: RequestId,
    /// Its user.
    pub user: UserId,
    /// The tier it was admitted under.
    pub tier: TierName,
    /// The GPUs it holds.
    pub gpus: Vec<GpuId>,
    /// When it was placed.
    pub placed_at: Timestamp,
    /// Whether it is busy.
    pub activity: Activity,
    /// When it last became idle (or was placed).
    pub idle_since: Timestamp,
    /// When an idle-reclaim warning said its GPUs could be reclaimed, if one was given.
    pub reclaim_at: Option<Timestamp>,
}

/// A queued request's place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStatus {
    /// One-based position in the current order.
    pub position: u32,
    /// As in [`Decision::Queue`].
    pub estimate: Option<Timestamp>,
}

/// An internal invariant does not hold: a bug in the allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantViolation(pub String);

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allocator invariant violated: {}", self.0)
    }
}

impl std::error::Error for InvariantViolation {}

impl Allocator {
    /// An allocator with no kernels, placing onto `inventory`.
    pub fn new(settings: Settings, inventory: Inventory) -> Allocator {
        let traits = settings.allocator.policy.traits();
        let decay_per_s = std::f64::consts::LN_2 / settings.allocator.usage_half_life_s as f64;
        Allocator {
            settings,
            traits,
            decay_per_s,
            inventory,
            owners: BTreeMap::new(),
            kernels: BTreeMap::new(),
            queue: BTreeMap::new(),
            queue_index: BTreeSet::new(),
            users: BTreeMap::new(),
            reported_positions: BTreeMap::new(),
            now: Timestamp::ZERO,
            next_seq: 0,
        }
    }

    /// Applies `event` at `now` and returns what the caller must do, in order.
    ///
    /// `now` never goes backwards: an earlier time is treated as the latest one seen.
    pub fn handle(&mut self, now: Timestamp, event: Event) -> Vec<Decision> {
        let now = now.max(self.now);
        self.now = now;
        let mut out = Vec::new();
        let mut new_request = None;
        match event {
            Event::StartRequested(request) => {
                new_request = self.on_start(now, request, &mut out);
            }
            Event::Exited { request } => self.on_exit(now, request),
            Event::Activity { request, activity } => self.on_activity(now, request, activity),
            Event::Tick => {}
            Event::InventoryChanged { gpus } => self.on_inventory(now, gpus, &mut out),
            Event::UsageLoaded {
                user,
                tier,
                records,
            } => {
                let decay_per_s = self.decay_per_s;
                let state = self.user_mut(&user, &tier);
                for record in records {
                    let record = UsageRecord {
                        end: record.end.min(now),
                        ..record
                    };
                    state.usage.record(record, decay_per_s, now);
                }
                self.rekey_user(&user, now);
            }
        }
        self.enforce_limits(now, &mut out);
        let order = self.schedule(now, &mut out);
        self.report_positions(&order, new_request, &mut out);
        out
    }

    /// The next time at which something happens without an event (a lifetime, a quota, an
    /// idle warning or reclaim): call [`Allocator::handle`] with [`Event::Tick`] then.
    /// Always later than the last `now` seen.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let now = self.now;
        let mut next: Option<Timestamp> = None;
        let mut consider = |at: Timestamp| {
            if at > now && next.is_none_or(|current| at < current) {
                next = Some(at);
            }
        };
        let warning_s = self.settings.allocator.reclaim_warning_s;
        for kernel in self.kernels.values() {
            if kernel.gpus.is_empty() {
                continue;
            }
            let Some(tier) = self.settings.tiers.get(&kernel.tier) else {
                continue;
            };
            if self.traits.enforce_lifetime {
                let end = kernel.placed_at.plus_secs(tier.lifetime_s_max);
                consider(end);
                if !kernel.lifetime_warned {
                    consider(end.minus_secs(self.settings.allocator.lifetime_warning_s));
                }
            }
            if kernel.activity == Activity::Idle {
                let idle_due = kernel.idle_since.plus_secs(tier.idle_reclaim_after_s);
                match self.traits.idle {
                    IdleRule::Keep => {}
                    IdleRule::StopAfterThreshold => consider(idle_due),
                    IdleRule::ReclaimWhenContended => match kernel.reclaim_at {
                        Some(at) => consider(at),
                        None => consider(idle_due.minus_secs(warning_s)),
                    },
                }
            }
        }
        if self.traits.enforce_quota {
            let mut seen = BTreeSet::new();
            for kernel in self.kernels.values() {
                if kernel.gpus.is_empty() || !seen.insert(&kernel.user) {
                    continue;
                }
                let state = &self.users[&kernel.user];
                if let Some(tier) = self.settings.tiers.get(&state.tier) {
                    let left = tier.gpu_seconds_per_week_max - self.week_usage(&kernel.user, now);
                    let held = f64::from(state.usage.gpus_held.max(1));
                    consider(now.plus_secs_f64_ceil((left - QUOTA_EPSILON_GPU_S).max(0.0) / held));
                }
            }
        }
        next
    }

    /// Where a queued request stands, or `None` when it is not queued.
    pub fn queue_status(&self, request: RequestId) -> Option<QueueStatus> {
        if !self.queue.contains_key(&request) {
            return None;
        }
        let order = self.order(self.now);
        let releases = self.releases();
        let mut needed = 0;
        for (idx, id) in order.iter().enumerate() {
            needed += self.queue[id].gpus;
            if *id == request {
                return Some(QueueStatus {
                    position: idx as u32 + 1,
                    estimate: self.estimate(needed, &releases),
                });
            }
        }
        None
    }

    /// The placed kernels.
    pub fn kernels(&self) -> Vec<KernelView> {
        self.kernels
            .iter()
            .map(|(request, kernel)| view(*request, kernel))
            .collect()
    }

    /// One placed kernel.
    pub fn kernel(&self, request: RequestId) -> Option<KernelView> {
        self.kernels
            .get(&request)
            .map(|kernel| view(request, kernel))
    }

    /// How many requests wait.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// The queued requests in the order they would be placed.
    pub fn queue_order(&self) -> Vec<RequestId> {
        self.order(self.now)
    }

    /// GPUs present and not granted.
    pub fn free_gpus(&self) -> u32 {
        self.inventory.len() - self.owners.len() as u32
    }

    /// The GPUs present.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The settings the allocator runs on.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A user's GPU hours in the seven days ending at `now`, running kernels included.
    pub fn gpu_hours_used(&self, user: &UserId, now: Timestamp) -> f64 {
        self.week_usage(user, now) / HOUR_S as f64
    }

    /// A user's decayed GPU usage at `now`, in GPU-seconds.
    pub fn decayed_usage(&self, user: &UserId, now: Timestamp) -> f64 {
        self.users
            .get(user)
            .map_or(0.0, |state| state.usage.decayed_at(now, self.decay_per_s))
    }

    /// Each user with GPUs held or queued: (user, GPUs held, fair share of the GPUs present).
    pub fn fair_shares(&self) -> Vec<(UserId, u32, f64)> {
        let level = self.share_level();
        self.users
            .iter()
            .filter(|(_, state)| state.usage.gpus_held + state.gpus_queued > 0)
            .map(|(user, state)| {
                let demand = f64::from(self.demand(state));
                (
                    user.clone(),
                    state.usage.gpus_held,
                    demand.min(self.weight(user) * level),
                )
            })
            .collect()
    }

    /// Checks the allocator's internal invariants: no GPU granted twice or absent, per-user
    /// counts consistent, caps, quotas and lifetimes respected, no placeable request left
    /// waiting, and no idle GPU left with someone over their share while someone under theirs
    /// waits for it. Meant for tests and the simulator; cost is linear in the state.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let now = self.now;
        let fail = |what: String| Err(InvariantViolation(what));
        let mut granted = 0usize;
        let mut held_by_user: BTreeMap<&UserId, u32> = BTreeMap::new();
        for (request, kernel) in &self.kernels {
            for gpu in &kernel.gpus {
                if !self.inventory.contains(*gpu) {
                    return fail(format!(
                        "{request} holds GPU {} which is not present",
                        gpu.0
                    ));
                }
                if self.owners.get(gpu) != Some(request) {
                    return fail(format!(
                        "GPU {} is held by {request} but owned otherwise",
                        gpu.0
                    ));
                }
            }
            granted += kernel.gpus.len();
            *held_by_user.entry(&kernel.user).or_default() += kernel.gpus.len() as u32;
            if !self
                .users
                .get(&kernel.user)
                .is_some_and(|state| state.kernels.contains(request))
            {
                return fail(format!("{request} is missing from its user's kernels"));
            }
            if self.queue.contains_key(request) {
                return fail(format!("{request} is both placed and queued"));
            }
        }
        if granted != self.owners.len() {
            return fail(format!(
                "{granted} GPU grants but {} owners",
                self.owners.len()
            ));
        }
        if self.owners.len() > self.inventory.len() as usize {
            return fail("more GPUs granted than present".to_owned());
        }
        if self.queue.len() > self.settings.allocator.queue_requests_max as usize {
            return fail("queue longer than queue_requests_max".to_owned());
        }
        if !self.traits.queue_when_full && !self.queue.is_empty() {
            return fail("a policy without a queue has queued requests".to_owned());
        }
        for (user, state) in &self.users {
            let held = held_by_user.get(user).copied().unwrap_or(0);
            if held != state.usage.gpus_held {
                return fail(format!(
                    "{user} holds {held} GPUs but is accounted {}",
                    state.usage.gpus_held
                ));
            }
            let gpus_queued: u32 = state.queued.iter().map(|id| self.queue[id].gpus).sum();
            if gpus_queued != state.gpus_queued {
                return fail(format!(
                    "{user} has {gpus_queued} GPUs queued, accounted {}",
                    state.gpus_queued
                ));
            }
            if self.traits.enforce_caps {
                let tiers = state
                    .kernels
                    .iter()
                    .map(|id| &self.kernels[id].tier)
                    .chain(state.queued.iter().map(|id| &self.queue[id].tier));
                let (mut kernels_max, mut gpus_max) = (0, 0);
                for tier in tiers {
                    if let Some(tier) = self.settings.tiers.get(tier) {
                        kernels_max = kernels_max.max(tier.kernels_max);
                        gpus_max = gpus_max.max(tier.gpus_max);
                    }
                }
                let kernels = (state.kernels.len() + state.queued.len()) as u32;
                if kernels > 0 && kernels > kernels_max {
                    return fail(format!(
                        "{user} has {kernels} kernels, more than {kernels_max}"
                    ));
                }
                if held + state.gpus_queued > gpus_max && kernels > 0 {
                    return fail(format!(
                        "{user} has {} GPUs, more than {gpus_max}",
                        held + state.gpus_queued
                    ));
                }
            }
            if self.traits.enforce_quota {
                if let Some(tier) = self.settings.tiers.get(&state.tier) {
                    let used = self.week_usage(user, now);
                    let allowed =
                        tier.gpu_seconds_per_week_max + QUOTA_SLACK_GPU_S * f64::from(held.max(1));
                    if held > 0 && used > allowed {
                        return fail(format!(
                            "{user} used {used:.1} GPU-s in a week, quota {:.1}",
                            tier.gpu_seconds_per_week_max
                        ));
                    }
                }
            }
        }
        for (request, kernel) in &self.kernels {
            if kernel.gpus.is_empty() {
                continue;
            }
            let Some(tier) = self.settings.tiers.get(&kernel.tier) else {
                continue;
            };
            if self.traits.enforce_lifetime && now > kernel.placed_at.plus_secs(tier.lifetime_s_max)
            {
                return fail(format!("{request} outlived its lifetime"));
            }
            if self.traits.idle == IdleRule::StopAfterThreshold
                && kernel.activity == Activity::Idle
                && now >= kernel.idle_since.plus_secs(tier.idle_reclaim_after_s)
            {
                return fail(format!("{request} stayed idle past its threshold"));
            }
        }
        let order = self.order(now);
        let free = self.free_gpus();
        if let Some(head) = order.first() {
            let head = &self.queue[head];
            let reserved = !self.traits.backfill
                || now.secs_since(head.enqueued_at)
                    >= self.settings.allocator.backfill_reserve_after_s as f64;
            if head.gpus <= free {
                return fail(format!("the head of the queue fits in {free} free GPUs"));
            }
            if !reserved {
                if let Some(id) = order.iter().find(|id| self.queue[*id].gpus <= free) {
                    return fail(format!("{id} fits in {free} free GPUs but waits"));
                }
            }
        }
        if self.traits.idle == IdleRule::ReclaimWhenContended && !self.queue.is_empty() {
            let level = self.share_level();
            let over = |user: &UserId| self.excess(user, level) > 1e-9;
            let under = |user: &UserId| self.excess(user, level) < -1e-9;
            let victim = self
                .kernels
                .iter()
                .find(|(_, kernel)| self.reclaimable(kernel, now) && over(&kernel.user));
            let waiter = self.queue.iter().find(|(_, queued)| {
                queued.gpus <= free + victim.map_or(0, |(_, kernel)| kernel.gpus.len() as u32)
                    && under(&queued.user)
            });
            if let (Some((victim, _)), Some((waiter, _))) = (victim, waiter) {
                return fail(format!(
                    "{victim} is reclaimable and {waiter} under its share waits"
                ));
            }
        }
        Ok(())
    }

    fn user_entry(&mut self, user: &UserId, tier: &TierName) -> &mut UserState {
        self.users.entry(user.clone()).or_insert_with(|| UserState {
            tier: tier.clone(),
            usage: Usage::default(),
            kernels: BTreeSet::new(),
            queued: BTreeSet::new(),
            gpus_queued: 0,
        })
    }

    fn user_mut(&mut self, user: &UserId, tier: &TierName) -> &mut UserState {
        let state = self.user_entry(user, tier);
        state.tier = tier.clone();
        state
    }

    fn on_start(
        &mut self,
        now: Timestamp,
        request: StartRequest,
        out: &mut Vec<Decision>,
    ) -> Option<RequestId> {
        let id = request.request;
        let refuse = |out: &mut Vec<Decision>, reason| {
            out.push(Decision::Refuse {
                request: id,
                reason,
            });
            None
        };
        if self.kernels.contains_key(&id) || self.queue.contains_key(&id) {
            return refuse(out, RefuseReason::DuplicateRequest);
        }
        let Some(tier) = self.settings.tiers.get(&request.tier).cloned() else {
            return refuse(out, RefuseReason::UnknownTier);
        };
        if request.gpus > self.inventory.len() {
            return refuse(
                out,
                RefuseReason::NotEnoughGpus {
                    present: self.inventory.len(),
                },
            );
        }
        let traits = self.traits;
        self.user_mut(&request.user, &request.tier);
        // A tier change alters the weight of the user's queued requests.
        self.rekey_user(&request.user, now);
        let state = &self.users[&request.user];
        if traits.enforce_caps {
            if request.gpus > tier.gpus_per_kernel_max {
                return refuse(
                    out,
                    RefuseReason::GpusPerKernelExceeded {
                        max: tier.gpus_per_kernel_max,
                    },
                );
            }
            if (state.kernels.len() + state.queued.len()) as u32 >= tier.kernels_max {
                return refuse(
                    out,
                    RefuseReason::KernelsMaxReached {
                        max: tier.kernels_max,
                    },
                );
            }
            if state.usage.gpus_held + state.gpus_queued + request.gpus > tier.gpus_max {
                return refuse(out, RefuseReason::GpusMaxReached { max: tier.gpus_max });
            }
        }
        if traits.enforce_quota && request.gpus > 0 {
            if let Some(reason) = self.quota_refusal(&request.user, now) {
                return refuse(out, reason);
            }
        }
        if request.gpus == 0 {
            self.place(now, id, &request.user, &request.tier, Vec::new(), out);
            return None;
        }
        if !traits.queue_when_full {
            if request.gpus <= self.free_gpus() {
                let gpus = self.pick_gpus(request.gpus);
                self.place(now, id, &request.user, &request.tier, gpus, out);
                return None;
            }
            return refuse(out, RefuseReason::NoGpuAvailable);
        }
        let queue_max = self.settings.allocator.queue_requests_max;
        if self.queue.len() >= queue_max as usize {
            return refuse(out, RefuseReason::QueueFull { max: queue_max });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let state = self
            .users
            .get_mut(&request.user)
            .expect("user was just inserted");
        state.queued.insert(id);
        state.gpus_queued += request.gpus;
        let key = self.order_key(&request.user, now);
        self.queue.insert(
            id,
            Queued {
                user: request.user.clone(),
                tier: request.tier,
                gpus: request.gpus,
                seq,
                enqueued_at: now,
                key,
            },
        );
        self.queue_index.insert(QueueKey {
            key,
            seq,
            request: id,
        });
        Some(id)
    }

    fn quota_refusal(&self, user: &UserId, now: Timestamp) -> Option<RefuseReason> {
        let state = self.users.get(user)?;
        let tier = self.settings.tiers.get(&state.tier)?;
        let left = tier.gpu_seconds_per_week_max - self.week_usage(user, now);
        if left > QUOTA_EPSILON_GPU_S {
            return None;
        }
        let retry_at = if state.usage.gpus_held == 0 && tier.gpu_seconds_per_week_max > 0.0 {
            let target = (tier.gpu_seconds_per_week_max - HOUR_S as f64).max(0.0);
            Some(state.usage.closed_falls_to(now, target))
        } else {
            None
        };
        Some(RefuseReason::GpuQuotaExhausted { retry_at })
    }

    fn on_exit(&mut self, now: Timestamp, request: RequestId) {
        if self.kernels.contains_key(&request) {
            self.release(now, request);
        } else {
            self.dequeue(request);
        }
    }

    fn on_activity(&mut self, now: Timestamp, request: RequestId, activity: Activity) {
        let Some(kernel) = self.kernels.get_mut(&request) else {
            return;
        };
        match activity {
            Activity::Busy => {
                kernel.activity = Activity::Busy;
                kernel.reclaim_at = None;
            }
            Activity::Idle => {
                if kernel.activity == Activity::Busy {
                    kernel.activity = Activity::Idle;
                    kernel.idle_since = now;
                    kernel.reclaim_at = None;
                }
            }
        }
    }

    fn on_inventory(&mut self, now: Timestamp, gpus: Vec<Gpu>, out: &mut Vec<Decision>) {
        let inventory = match Inventory::new(gpus) {
            Ok(inventory) => inventory,
            // A malformed list (duplicate ids) keeps the last good inventory.
            Err(_) => return,
        };
        self.inventory = inventory;
        let lost: Vec<RequestId> = self
            .owners
            .iter()
            .filter(|(gpu, _)| !self.inventory.contains(**gpu))
            .map(|(_, request)| *request)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for request in lost {
            if let Some(kernel) = self.release(now, request) {
                out.push(Decision::Reclaim {
                    request,
                    gpus: kernel.gpus,
                    reason: ReclaimReason::GpuRemoved,
                });
            }
        }
    }

    fn enforce_limits(&mut self, now: Timestamp, out: &mut Vec<Decision>) {
        let lifetime_warning_s = self.settings.allocator.lifetime_warning_s;
        let mut stops = Vec::new();
        let mut reclaims = Vec::new();
        for (request, kernel) in &mut self.kernels {
            if kernel.gpus.is_empty() {
                continue;
            }
            let Some(tier) = self.settings.tiers.get(&kernel.tier) else {
                continue;
            };
            if self.traits.enforce_lifetime {
                let end = kernel.placed_at.plus_secs(tier.lifetime_s_max);
                if now >= end {
                    stops.push((*request, StopReason::LifetimeReached));
                    continue;
                }
                if !kernel.lifetime_warned && now >= end.minus_secs(lifetime_warning_s) {
                    kernel.lifetime_warned = true;
                    out.push(Decision::Warn {
                        request: *request,
                        at: end,
                        reason: WarnReason::Lifetime,
                    });
                }
            }
            if self.traits.idle == IdleRule::StopAfterThreshold
                && kernel.activity == Activity::Idle
                && now >= kernel.idle_since.plus_secs(tier.idle_reclaim_after_s)
            {
                reclaims.push(*request);
            }
        }
        for (request, reason) in stops {
            self.release(now, request);
            out.push(Decision::Stop { request, reason });
        }
        for request in reclaims {
            if let Some(kernel) = self.release(now, request) {
                out.push(Decision::Reclaim {
                    request,
                    gpus: kernel.gpus,
                    reason: ReclaimReason::IdleTimeout,
                });
            }
        }
        if self.traits.enforce_quota {
            let holders: BTreeSet<UserId> = self
                .kernels
                .values()
                .filter(|kernel| !kernel.gpus.is_empty())
                .map(|kernel| kernel.user.clone())
                .collect();
            for user in holders {
                let state = &self.users[&user];
                let Some(tier) = self.settings.tiers.get(&state.tier) else {
                    continue;
                };
                if tier.gpu_seconds_per_week_max - self.week_usage(&user, now) > QUOTA_EPSILON_GPU_S
                {
                    continue;
                }
                let gpu_kernels: Vec<RequestId> = state
                    .kernels
                    .iter()
                    .filter(|id| !self.kernels[*id].gpus.is_empty())
                    .copied()
                    .collect();
                for request in gpu_kernels {
                    self.release(now, request);
                    out.push(Decision::Stop {
                        request,
                        reason: StopReason::GpuQuotaExhausted,
                    });
                }
                let queued: Vec<RequestId> = self.users[&user].queued.iter().copied().collect();
                for request in queued {
                    if self.queue[&request].gpus == 0 {
                        continue;
                    }
                    self.dequeue(request);
                    let reason = self
                        .quota_refusal(&user, now)
                        .unwrap_or(RefuseReason::GpuQuotaExhausted { retry_at: None });
                    out.push(Decision::Refuse { request, reason });
                }
            }
        }
    }

    /// Places what fits in order, reclaims idle GPUs for waiters under their share, and warns
    /// idle kernels while GPUs are contended. Returns the final queue order.
    fn schedule(&mut self, now: Timestamp, out: &mut Vec<Decision>) -> Vec<RequestId> {
        self.rekey_holders(now);
        loop {
            let order = self.order(now);
            let any_blocked = self.place_in_order(now, &order, out);
            if self.traits.idle != IdleRule::ReclaimWhenContended || !any_blocked {
                break;
            }
            let order = self.order(now);
            if !self.reclaim_for(now, &order, out) {
                break;
            }
        }
        if self.traits.idle == IdleRule::ReclaimWhenContended {
            self.warn_idle(now, out);
        }
        self.order(now)
    }

    /// Places queued requests that fit, in order; returns whether any is left waiting.
    fn place_in_order(
        &mut self,
        now: Timestamp,
        order: &[RequestId],
        out: &mut Vec<Decision>,
    ) -> bool {
        let reserve_after_s = self.settings.allocator.backfill_reserve_after_s as f64;
        let mut free = self.free_gpus();
        let mut any_blocked = false;
        let mut reserved = false;
        for &id in order {
            if free == 0 || reserved {
                // Queued requests all want at least one GPU: nothing more can be placed.
                return true;
            }
            let Some(queued) = self.queue.get(&id) else {
                continue;
            };
            if queued.gpus > free {
                if !any_blocked
                    && (!self.traits.backfill
                        || now.secs_since(queued.enqueued_at) >= reserve_after_s)
                {
                    reserved = true;
                }
                any_blocked = true;
                continue;
            }
            if self.traits.enforce_quota {
                let user = queued.user.clone();
                if let Some(reason) = self.quota_refusal(&user, now) {
                    self.dequeue(id);
                    out.push(Decision::Refuse {
                        request: id,
                        reason,
                    });
                    continue;
                }
            }
            let queued = self.dequeue(id).expect("request is queued");
            free -= queued.gpus;
            let gpus = self.pick_gpus(queued.gpus);
            self.place(now, id, &queued.user, &queued.tier, gpus, out);
        }
        any_blocked
    }

    fn reclaimable(&self, kernel: &Kernel, now: Timestamp) -> bool {
        kernel.activity == Activity::Idle
            && !kernel.gpus.is_empty()
            && kernel.reclaim_at.is_some_and(|at| at <= now)
    }

    /// Reclaims warned idle GPUs of users over their share for waiters under theirs, and
    /// places those waiters on them. Returns whether anything was reclaimed.
    fn reclaim_for(
        &mut self,
        now: Timestamp,
        waiters: &[RequestId],
        out: &mut Vec<Decision>,
    ) -> bool {
        let mut candidates: Vec<RequestId> = self
            .kernels
            .iter()
            .filter(|(_, kernel)| self.reclaimable(kernel, now))
            .map(|(id, _)| *id)
            .collect();
        if candidates.is_empty() {
            return false;
        }
        // Each reclaim lowers its victim's demand and so raises the level: recompute it then.
        let mut level = self.share_level();
        let mut reclaimed = false;
        for &waiter in waiters {
            candidates.retain(|id| self.kernels.contains_key(id));
            if candidates.is_empty() {
                break;
            }
            let Some(queued) = self.queue.get(&waiter) else {
                continue;
            };
            let (user, gpus) = (queued.user.clone(), queued.gpus);
            if gpus <= self.free_gpus() || self.excess(&user, level) >= -1e-9 {
                continue;
            }
            candidates.sort_by(|a, b| {
                let (ka, kb) = (&self.kernels[a], &self.kernels[b]);
                let ea = self.excess(&ka.user, level) / self.weight(&ka.user);
                let eb = self.excess(&kb.user, level) / self.weight(&kb.user);
                eb.total_cmp(&ea)
                    .then(ka.idle_since.cmp(&kb.idle_since))
                    .then(a.cmp(b))
            });
            let mut chosen = Vec::new();
            let mut gained = self.free_gpus();
            // Victims are judged one after another, each against the level that the reclaims
            // before it leave (a reclaim lowers its victim's demand and so raises the level).
            let mut taken: BTreeMap<&UserId, u32> = BTreeMap::new();
            let mut level_now = level;
            for id in &candidates {
                if gained >= gpus {
                    break;
                }
                let kernel = &self.kernels[id];
                let already = taken.get(&kernel.user).copied().unwrap_or(0);
                let state = &self.users[&kernel.user];
                let held = f64::from(state.usage.gpus_held - already);
                let reduction = if self.settings.allocator.idle_gpus_count_as_demand {
                    already
                } else {
                    0
                };
                let demand = f64::from(self.demand(state) - reduction);
                if held - demand.min(self.weight(&kernel.user) * level_now) <= 1e-9 {
                    continue;
                }
                *taken.entry(&kernel.user).or_default() += kernel.gpus.len() as u32;
                gained += kernel.gpus.len() as u32;
                chosen.push(*id);
                level_now = self.share_level_reduced(&taken);
            }
            if gained < gpus {
                // Taking small victims first can leave a multi-GPU waiter short while one
                // larger victim, over its share on its own, would cover it: take that one.
                let free = self.free_gpus();
                let single = candidates.iter().find(|id| {
                    let kernel = &self.kernels[*id];
                    free + kernel.gpus.len() as u32 >= gpus
                        && self.excess(&kernel.user, level) > 1e-9
                });
                match single {
                    Some(id) => chosen = vec![*id],
                    None => continue,
                }
            }
            for id in chosen {
                if let Some(kernel) = self.release(now, id) {
                    reclaimed = true;
                    out.push(Decision::Reclaim {
                        request: id,
                        gpus: kernel.gpus,
                        reason: ReclaimReason::IdleContended,
                    });
                }
            }
            let queued = self.dequeue(waiter).expect("waiter is queued");
            let granted = self.pick_gpus(queued.gpus);
            self.place(now, waiter, &queued.user, &queued.tier, granted, out);
            level = self.share_level();
        }
        reclaimed
    }

    /// GPUs held beyond the user's share at water level `level` (negative: under it).
    /// With demand at least the GPUs held, `held > min(demand, weight * level)` exactly when
    /// `held > weight * level`.
    fn excess(&self, user: &UserId, level: f64) -> f64 {
        let Some(state) = self.users.get(user) else {
            return 0.0;
        };
        let held = f64::from(state.usage.gpus_held);
        let demand = f64::from(self.demand(state));
        held - demand.min(self.weight(user) * level)
    }

    /// GPUs a user holds or waits for, less (when so configured) GPUs of kernels idle past
    /// their tier's threshold.
    fn demand(&self, state: &UserState) -> u32 {
        let total = state.usage.gpus_held + state.gpus_queued;
        if self.settings.allocator.idle_gpus_count_as_demand {
            return total;
        }
        let idle: u32 = state
            .kernels
            .iter()
            .map(|id| &self.kernels[id])
            .filter(|kernel| self.idle_past_threshold(kernel, self.now))
            .map(|kernel| kernel.gpus.len() as u32)
            .sum();
        total - idle
    }

    fn idle_past_threshold(&self, kernel: &Kernel, now: Timestamp) -> bool {
        kernel.activity == Activity::Idle
            && !kernel.gpus.is_empty()
            && self
                .settings
                .tiers
                .get(&kernel.tier)
                .is_some_and(|tier| now >= kernel.idle_since.plus_secs(tier.idle_reclaim_after_s))
    }

    fn warn_idle(&mut self, now: Timestamp, out: &mut Vec<Decision>) {
        if self.free_gpus() > 0 && self.queue.is_empty() {
            return;
        }
        let warning_s = self.settings.allocator.reclaim_warning_s;
        for (request, kernel) in &mut self.kernels {
            if kernel.gpus.is_empty()
                || kernel.activity != Activity::Idle
                || kernel.reclaim_at.is_some()
            {
                continue;
            }
            let Some(tier) = self.settings.tiers.get(&kernel.tier) else {
                continue;
            };
            let idle_due = kernel.idle_since.plus_secs(tier.idle_reclaim_after_s);
            if now >= idle_due.minus_secs(warning_s) {
                let at = idle_due.max(now.plus_secs(warning_s));
                kernel.reclaim_at = Some(at);
                out.push(Decision::Warn {
                    request: *request,
                    at,
                    reason: WarnReason::IdleReclaim,
                });
            }
        }
    }

    fn report_positions(
        &mut self,
        order: &[RequestId],
        new_request: Option<RequestId>,
        out: &mut Vec<Decision>,
    ) {
        let reported_max = self.settings.allocator.queue_positions_reported_max as usize;
        let releases = self.releases();
        let mut needed = 0;
        let mut new_seen = new_request.is_none();
        for (idx, id) in order.iter().enumerate() {
            if idx >= reported_max && new_seen {
                break;
            }
            needed += self.queue[id].gpus;
            let position = idx as u32 + 1;
            let is_new = Some(*id) == new_request;
            if is_new {
                new_seen = true;
            } else if idx >= reported_max || self.reported_positions.get(id) == Some(&position) {
                continue;
            }
            let estimate = self.estimate(needed, &releases);
            if idx < reported_max {
                self.reported_positions.insert(*id, position);
            }
            out.push(if is_new {
                Decision::Queue {
                    request: *id,
                    position,
                    estimate,
                }
            } else {
                Decision::QueuePositionChanged {
                    request: *id,
                    position,
                    estimate,
                }
            });
        }
    }

    /// When GPUs held now are released at the latest: lifetime ends, sorted.
    fn releases(&self) -> Vec<(Timestamp, u32)> {
        if !self.traits.enforce_lifetime {
            return Vec::new();
        }
        let mut releases: Vec<(Timestamp, u32)> = self
            .kernels
            .values()
            .filter(|kernel| !kernel.gpus.is_empty())
            .filter_map(|kernel| {
                let tier = self.settings.tiers.get(&kernel.tier)?;
                Some((
                    kernel.placed_at.plus_secs(tier.lifetime_s_max),
                    kernel.gpus.len() as u32,
                ))
            })
            .collect();
        releases.sort();
        releases
    }

    fn estimate(&self, needed: u32, releases: &[(Timestamp, u32)]) -> Option<Timestamp> {
        let mut available = self.free_gpus();
        if available >= needed {
            return Some(self.now);
        }
        for (at, gpus) in releases {
            available += gpus;
            if available >= needed {
                return Some(*at);
            }
        }
        None
    }

    fn order(&self, _now: Timestamp) -> Vec<RequestId> {
        self.queue_index.iter().map(|entry| entry.request).collect()
    }

    /// The order key of a user's requests at `now`: `ln(decayed / weight) + decay * now`,
    /// which does not change while the user holds no GPUs (everyone's usage decays alike), so
    /// only holders need re-keying as time passes.
    fn order_key(&self, user: &UserId, now: Timestamp) -> f64 {
        if self.traits.order == QueueOrder::Arrival {
            return 0.0;
        }
        let decayed = self.decayed_usage(user, now);
        if decayed <= 0.0 {
            return f64::NEG_INFINITY;
        }
        (decayed / self.weight(user)).ln() + self.decay_per_s * now.as_secs_f64()
    }

    fn rekey_user(&mut self, user: &UserId, now: Timestamp) {
        if self.traits.order == QueueOrder::Arrival {
            return;
        }
        let Some(state) = self.users.get(user) else {
            return;
        };
        if state.queued.is_empty() {
            return;
        }
        let key = self.order_key(user, now);
        let ids: Vec<RequestId> = state.queued.iter().copied().collect();
        for id in ids {
            let queued = self
                .queue
                .get_mut(&id)
                .expect("user's queued request exists");
            if queued.key.total_cmp(&key).is_ne() {
                self.queue_index.remove(&QueueKey {
                    key: queued.key,
                    seq: queued.seq,
                    request: id,
                });
                queued.key = key;
                self.queue_index.insert(QueueKey {
                    key,
                    seq: queued.seq,
                    request: id,
                });
            }
        }
    }

    fn rekey_holders(&mut self, now: Timestamp) {
        if self.traits.order == QueueOrder::Arrival {
            return;
        }
        let holders: BTreeSet<UserId> = self
            .kernels
            .values()
            .filter(|kernel| !kernel.gpus.is_empty() && !self.users[&kernel.user].queued.is_empty())
            .map(|kernel| kernel.user.clone())
            .collect();
        for user in holders {
            self.rekey_user(&user, now);
        }
    }

    fn weight(&self, user: &UserId) -> f64 {
        self.users
            .get(user)
            .and_then(|state| self.settings.tiers.get(&state.tier))
            .map_or(1.0, |tier: &Tier| tier.share_weight)
    }

    /// The water level of the fair shares of the GPUs present among users holding or wanting
    /// GPUs; claims are grouped by (demand, weight) so the cost is one pass over users.
    fn share_level(&self) -> f64 {
        self.share_level_reduced(&BTreeMap::new())
    }

    /// As [`Allocator::share_level`], with some users' demand lowered by GPUs about to be
    /// reclaimed from them.
    fn share_level_reduced(&self, reductions: &BTreeMap<&UserId, u32>) -> f64 {
        let mut groups: BTreeMap<(u32, u64), f64> = BTreeMap::new();
        for (user, state) in &self.users {
            // Reclaimed kernels are idle past their threshold: when such GPUs are not demand,
            // reclaiming them does not lower it further.
            let reduction = if self.settings.allocator.idle_gpus_count_as_demand {
                reductions.get(user).copied().unwrap_or(0)
            } else {
                0
            };
            let demand = self.demand(state).saturating_sub(reduction);
            if demand > 0 {
                *groups
                    .entry((demand, self.weight(user).to_bits()))
                    .or_default() += 1.0;
            }
        }
        let claims: Vec<ShareClaim> = groups
            .into_iter()
            .map(|((demand, weight), count)| ShareClaim {
                weight: f64::from_bits(weight) * count,
                demand: f64::from(demand) * count,
            })
            .collect();
        water_level(&claims, f64::from(self.inventory.len()))
    }

    fn week_usage(&self, user: &UserId, now: Timestamp) -> f64 {
        let Some(state) = self.users.get(user) else {
            return 0.0;
        };
        let window_start = now.minus_secs(crate::time::WEEK_S);
        let running: f64 = state
            .kernels
            .iter()
            .map(|id| &self.kernels[id])
            .map(|kernel| {
                now.secs_since(kernel.placed_at.max(window_start)) * kernel.gpus.len() as f64
            })
            .sum();
        state.usage.closed_in_week(now) + running
    }

    fn pick_gpus(&self, count: u32) -> Vec<GpuId> {
        let gpus: Vec<GpuId> = self
            .inventory
            .gpus()
            .iter()
            .map(|gpu| gpu.id)
            .filter(|id| !self.owners.contains_key(id))
            .take(count as usize)
            .collect();
        assert_eq!(
            gpus.len(),
            count as usize,
            "placing onto GPUs that are not free"
        );
        gpus
    }

    fn place(
        &mut self,
        now: Timestamp,
        request: RequestId,
        user: &UserId,
        tier: &TierName,
        gpus: Vec<GpuId>,
        out: &mut Vec<Decision>,
    ) {
        for gpu in &gpus {
            let previous = self.owners.insert(*gpu, request);
            assert!(previous.is_none(), "GPU {} granted twice", gpu.0);
        }
        let decay_per_s = self.decay_per_s;
        // Dequeuing may have forgotten a user with no history; bring them back.
        let state = self.user_entry(user, tier);
        state.usage.accrue(now, decay_per_s);
        state.usage.gpus_held += gpus.len() as u32;
        state.kernels.insert(request);
        self.reported_positions.remove(&request);
        self.kernels.insert(
            request,
            Kernel {
                user: user.clone(),
                tier: tier.clone(),
                gpus: gpus.clone(),
                placed_at: now,
                activity: Activity::Idle,
                idle_since: now,
                reclaim_at: None,
                lifetime_warned: false,
            },
        );
        out.push(Decision::Place { request, gpus });
    }

    fn release(&mut self, now: Timestamp, request: RequestId) -> Option<Kernel> {
        let kernel = self.kernels.remove(&request)?;
        for gpu in &kernel.gpus {
            self.owners.remove(gpu);
        }
        let decay_per_s = self.decay_per_s;
        let state = self
            .users
            .get_mut(&kernel.user)
            .expect("kernel's user is known");
        state.usage.accrue(now, decay_per_s);
        state.usage.gpus_held -= kernel.gpus.len() as u32;
        state.kernels.remove(&request);
        state.usage.record(
            UsageRecord {
                start: kernel.placed_at,
                end: now,
                gpus: kernel.gpus.len() as u32,
            },
            decay_per_s,
            now,
        );
        state.usage.prune(now);
        let user = kernel.user.clone();
        self.rekey_user(&user, now);
        self.forget_if_empty(&user);
        Some(kernel)
    }

    fn dequeue(&mut self, request: RequestId) -> Option<Queued> {
        let queued = self.queue.remove(&request)?;
        self.queue_index.remove(&QueueKey {
            key: queued.key,
            seq: queued.seq,
            request,
        });
        self.reported_positions.remove(&request);
        let state = self
            .users
            .get_mut(&queued.user)
            .expect("queued user is known");
        state.queued.remove(&request);
        state.gpus_queued -= queued.gpus;
        self.forget_if_empty(&queued.user.clone());
        Some(queued)
    }

    fn forget_if_empty(&mut self, user: &UserId) {
        let prune = self.users.get_mut(user).is_some_and(|state| {
            state.usage.prune(self.now);
            state.kernels.is_empty() && state.queued.is_empty() && state.usage.is_empty()
        });
        if prune {
            self.users.remove(user);
        }
    }
}

fn view(request: RequestId, kernel: &Kernel) -> KernelView {
    KernelView {
        request,
        user: kernel.user.clone(),
        tier: kernel.tier.clone(),
        gpus: kernel.gpus.clone(),
        placed_at: kernel.placed_at,
        activity: kernel.activity,
        idle_since: kernel.idle_since,
        reclaim_at: kernel.reclaim_at,
    }
}
