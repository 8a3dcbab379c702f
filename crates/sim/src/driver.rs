//! The virtual-clock driver: replays a workload through [`Allocator::handle`], ticking at the
//! allocator's deadlines, acting out each session's busy and idle phases, and measuring.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use commonlab_allocator::{
    Activity, Allocator, Decision, Event, GpuId, Inventory, PolicyKind, ReclaimReason,
    RefuseReason, RequestId, StartRequest, StopReason, TierName, Timestamp, UserId, WarnReason,
};

use crate::diagnostics::{Diagnostics, WaitKind};
use crate::metrics::Recorder;
use crate::workload::{SessionPlan, Workload};
use crate::{metrics::Metrics, policies};

/// How long a refused user waits before asking again.
pub const RETRY_S: f64 = 300.0;
/// How long a user waits for a GPU (queued or retrying) before giving up.
pub const PATIENCE_S: f64 = 4.0 * 3_600.0;

/// Options of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Check the allocator's invariants after every step (slow on long runs).
    pub check_invariants: bool,
    /// Changes to the simulated tiers.
    pub overrides: policies::Overrides,
    /// Collect [`Diagnostics`] (slower).
    pub diagnose: bool,
    /// A session stopped at its lifetime asks again for the rest of its plan at its next busy
    /// phase, as after a reclaim, instead of ending.
    pub resume_after_lifetime: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Asked, not yet placed (queued, or refused and retrying).
    Waiting,
    Running,
    /// Lost its GPUs to an idle reclaim; the user comes back at the next busy phase.
    Detached,
    Done,
}

#[derive(Debug)]
struct Session {
    plan: SessionPlan,
    chain: Option<usize>,
    state: State,
    phase: usize,
    phase_left_s: f64,
    phase_started_s: f64,
    request: Option<RequestId>,
    queued: bool,
    asked_s: f64,
    busy: bool,
    idle_since_s: f64,
    reclaim_warning_at_s: Option<f64>,
    ever_placed: bool,
    token: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Arrive(usize),
    PhaseEnd { session: usize, token: u64 },
    Retry { session: usize, token: u64 },
    Patience { session: usize, token: u64 },
    ChainNext { chain: usize },
}

/// One policy's run over one workload.
pub fn run(
    workload: &Workload,
    policy: PolicyKind,
    options: RunOptions,
) -> Result<Metrics, String> {
    Driver::new(workload, policy, options).run()
}

struct Driver<'w> {
    workload: &'w Workload,
    policy: PolicyKind,
    options: RunOptions,
    allocator: Allocator,
    sessions: Vec<Session>,
    by_request: BTreeMap<RequestId, usize>,
    chain_next: Vec<usize>,
    timers: BinaryHeap<Reverse<(u64, u64, Timer)>>,
    timer_seq: u64,
    next_request: u64,
    now_s: f64,
    owners: BTreeMap<GpuId, RequestId>,
    recorder: Recorder,
    user_ids: Vec<UserId>,
    tier_names: Vec<TierName>,
    grace_s: f64,
    /// Sessions waiting for GPUs and what they are doing, for diagnostics.
    waiting: BTreeMap<usize, WaitKind>,
    diagnostics: Option<Diagnostics>,
    /// Users who have asked before.
    seen: Vec<bool>,
    /// Newcomers not yet placed: what they found when they first asked.
    newcomer_cause: BTreeMap<usize, &'static str>,
}

impl<'w> Driver<'w> {
    fn new(workload: &'w Workload, policy: PolicyKind, options: RunOptions) -> Driver<'w> {
        let settings = policies::settings(policy, options.overrides);
        let grace_s = settings.allocator.reclaim_warning_s as f64;
        let weights: Vec<f64> = workload
            .users
            .iter()
            .map(|user| settings.tiers[&TierName::new(user.tier.name())].share_weight)
            .collect();
        let allocator = Allocator::new(settings, Inventory::fake(workload.gpus, "Simulated"));
        let mut driver = Driver {
            workload,
            policy,
            options,
            allocator,
            sessions: Vec::new(),
            by_request: BTreeMap::new(),
            chain_next: vec![0; workload.chains.len()],
            timers: BinaryHeap::new(),
            timer_seq: 0,
            next_request: 0,
            now_s: 0.0,
            owners: BTreeMap::new(),
            recorder: Recorder::new(workload, weights),
            user_ids: workload
                .users
                .iter()
                .map(|user| UserId::new(&user.name))
                .collect(),
            tier_names: workload
                .users
                .iter()
                .map(|user| TierName::new(user.tier.name()))
                .collect(),
            grace_s,
            waiting: BTreeMap::new(),
            diagnostics: options.diagnose.then(Diagnostics::default),
            seen: vec![false; workload.users.len()],
            newcomer_cause: BTreeMap::new(),
        };
        for (idx, _) in workload.sessions.iter().enumerate() {
            driver.schedule(workload.sessions[idx].arrive_s, Timer::Arrive(idx));
        }
        for (chain, spec) in workload.chains.iter().enumerate() {
            driver.schedule(spec.start_s, Timer::ChainNext { chain });
        }
        driver
    }

    fn schedule(&mut self, at_s: f64, timer: Timer) {
        self.timer_seq += 1;
        let at_ms = (at_s.max(self.now_s) * 1_000.0).round() as u64;
        self.timers.push(Reverse((at_ms, self.timer_seq, timer)));
    }

    fn run(mut self) -> Result<Metrics, String> {
        let end_ms = (self.workload.end_s * 1_000.0) as u64;
        loop {
            let timer_at = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let deadline = self.allocator.next_deadline().map(Timestamp::as_millis);
            let next = match (timer_at, deadline) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
            };
            if next > end_ms {
                break;
            }
            self.advance(next);
            if deadline == Some(next) && timer_at.is_none_or(|at| at > next) {
                self.send(Event::Tick)?;
                continue;
            }
            let Reverse((_, _, timer)) = self.timers.pop().expect("a timer is due");
            self.fire(timer)?;
        }
        self.advance(end_ms);
        for idx in 0..self.sessions.len() {
            if self.sessions[idx].state == State::Waiting {
                self.recorder
                    .request_unserved(self.sessions[idx].plan.user, self.sessions[idx].asked_s);
            }
        }
        let still_waiting: Vec<usize> = self.waiting.keys().copied().collect();
        for idx in still_waiting {
            if in_window(self.workload, self.sessions[idx].asked_s) {
                if let Some(diagnostics) = &mut self.diagnostics {
                    diagnostics.unserved("still waiting at the end".to_owned());
                }
            }
        }
        let causes: Vec<&'static str> = self.newcomer_cause.values().copied().collect();
        if let Some(diagnostics) = &mut self.diagnostics {
            for cause in causes {
                diagnostics.slow_newcomer(cause);
            }
            diagnostics.busy_planned_fraction = busy_planned_fraction(self.workload);
            let window_s = self.workload.horizon_s - self.workload.warmup_s;
            diagnostics.normalise(window_s * f64::from(self.workload.gpus));
        }
        let mut metrics = self.recorder.finish(self.workload, self.policy);
        metrics.diagnostics = self.diagnostics;
        Ok(metrics)
    }

    /// Attributes free GPU time over `[from_s, to_s)` to what waiting sessions were doing.
    fn diagnose_interval(&mut self, from_s: f64, to_s: f64) {
        let Some(diagnostics) = &mut self.diagnostics else {
            return;
        };
        let dt = to_s.min(self.workload.horizon_s) - from_s.max(self.workload.warmup_s);
        let free = self.workload.gpus as usize - self.owners.len().min(self.workload.gpus as usize);
        if dt <= 0.0 || free == 0 {
            return;
        }
        let gpu_s = dt * free as f64;
        if self.waiting.is_empty() {
            diagnostics.free_while_nobody_waits += gpu_s;
            return;
        }
        let mut category: Option<(u8, String)> = None;
        for (&idx, kind) in &self.waiting {
            let candidate = match kind {
                WaitKind::Queued if self.sessions[idx].plan.gpus as usize <= free => {
                    (0, "queued request that fits".to_owned())
                }
                WaitKind::Queued => (1, "queued request wanting more GPUs than free".to_owned()),
                WaitKind::Refused(code) => (2, format!("refused {code}")),
            };
            if category.as_ref().is_none_or(|current| candidate < *current) {
                category = Some(candidate);
            }
        }
        let (_, category) = category.expect("someone waits");
        diagnostics.free_while_waiting(category, gpu_s);
    }

    /// What a newcomer who was not placed at once found.
    fn newcomer_cause(&self, idx: usize) -> &'static str {
        let free = self.workload.gpus as usize > self.owners.len();
        if free {
            return match self.waiting.get(&idx) {
                Some(WaitKind::Refused(_)) => "free GPU, refused",
                _ => "free GPU, queued",
            };
        }
        let (mut idle_over, mut busy_over) = (0, 0);
        for session in &self.sessions {
            if session.state == State::Running && self.recorder.over_share(session.plan.user) {
                if session.busy {
                    busy_over += 1;
                } else {
                    idle_over += 1;
                }
            }
        }
        if idle_over > 0 {
            "an over-share kernel idle, not yet reclaimable"
        } else if busy_over > 0 {
            "every over-share kernel busy"
        } else {
            "nobody over their share"
        }
    }

    fn advance(&mut self, at_ms: u64) {
        let at_s = at_ms as f64 / 1_000.0;
        if at_s > self.now_s {
            self.diagnose_interval(self.now_s, at_s);
            self.recorder.advance(self.now_s, at_s);
            self.now_s = at_s;
        }
    }

    fn fire(&mut self, timer: Timer) -> Result<(), String> {
        match timer {
            Timer::Arrive(idx) => {
                let plan = self.workload.sessions[idx].clone();
                self.open(plan, None)?;
            }
            Timer::ChainNext { chain } => {
                let spec = &self.workload.chains[chain];
                let idx = self.chain_next[chain];
                if let Some(plan) = spec.sessions.get(idx).cloned() {
                    self.chain_next[chain] += 1;
                    self.open(plan, Some(chain))?;
                }
            }
            Timer::PhaseEnd { session, token } => {
                if self.sessions[session].token == token {
                    self.phase_end(session)?;
                }
            }
            Timer::Retry { session, token } => {
                if self.sessions[session].token == token
                    && self.sessions[session].state == State::Waiting
                {
                    self.ask(session)?;
                }
            }
            Timer::Patience { session, token } => {
                if self.sessions[session].token == token
                    && self.sessions[session].state == State::Waiting
                {
                    self.give_up(session)?;
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, plan: SessionPlan, chain: Option<usize>) -> Result<(), String> {
        let first = plan.phases[0];
        self.sessions.push(Session {
            plan,
            chain,
            state: State::Waiting,
            phase: 0,
            phase_left_s: first,
            phase_started_s: self.now_s,
            request: None,
            queued: false,
            asked_s: self.now_s,
            busy: false,
            idle_since_s: self.now_s,
            reclaim_warning_at_s: None,
            ever_placed: false,
            token: 0,
        });
        let idx = self.sessions.len() - 1;
        let user = self.sessions[idx].plan.user;
        let newcomer = !self.seen[user] && in_window(self.workload, self.now_s);
        self.seen[user] = true;
        self.start_waiting(idx)?;
        if newcomer && self.diagnostics.is_some() && self.sessions[idx].state == State::Waiting {
            let cause = self.newcomer_cause(idx);
            self.newcomer_cause.insert(user, cause);
        }
        Ok(())
    }

    /// The session wants GPUs from now on.
    fn start_waiting(&mut self, idx: usize) -> Result<(), String> {
        let now = self.now_s;
        let session = &mut self.sessions[idx];
        session.state = State::Waiting;
        session.asked_s = now;
        session.token += 1;
        let token = session.token;
        self.recorder
            .want(session.plan.user, session.plan.gpus as i64, now);
        self.schedule(
            now + PATIENCE_S,
            Timer::Patience {
                session: idx,
                token,
            },
        );
        self.ask(idx)
    }

    fn ask(&mut self, idx: usize) -> Result<(), String> {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        let session = &mut self.sessions[idx];
        session.request = Some(request);
        session.queued = true;
        self.by_request.insert(request, idx);
        self.waiting.insert(idx, WaitKind::Queued);
        let user = session.plan.user;
        let event = Event::StartRequested(StartRequest {
            request,
            user: self.user_ids[user].clone(),
            tier: self.tier_names[user].clone(),
            gpus: session.plan.gpus,
        });
        self.send(event)
    }

    fn give_up(&mut self, idx: usize) -> Result<(), String> {
        let session = &mut self.sessions[idx];
        let (user, gpus, asked) = (session.plan.user, session.plan.gpus, session.asked_s);
        session.state = State::Done;
        session.token += 1;
        let queued = session.queued.then_some(session.request).flatten();
        let kind = self.waiting.remove(&idx);
        if let (Some(diagnostics), true) = (&mut self.diagnostics, in_window(self.workload, asked))
        {
            diagnostics.unserved(match kind {
                Some(WaitKind::Refused(code)) => format!("gave up after refusal {code}"),
                _ => "gave up while queued".to_owned(),
            });
        }
        self.recorder.want(user, -(gpus as i64), self.now_s);
        self.recorder.request_unserved(user, asked);
        if let Some(request) = queued {
            self.sessions[idx].queued = false;
            self.send(Event::Exited { request })?;
        }
        self.next_in_chain(idx);
        Ok(())
    }

    fn next_in_chain(&mut self, idx: usize) {
        if let Some(chain) = self.sessions[idx].chain {
            self.schedule(self.now_s, Timer::ChainNext { chain });
        }
    }

    fn phase_end(&mut self, idx: usize) -> Result<(), String> {
        let now = self.now_s;
        let session = &mut self.sessions[idx];
        let next = session.phase + 1;
        match session.state {
            State::Running => {
                if next >= session.plan.phases.len() {
                    let request = session.request.expect("running session has a request");
                    self.finish(idx, false)?;
                    return self.send(Event::Exited { request });
                }
                session.phase = next;
                session.phase_started_s = now;
                session.phase_left_s = session.plan.phases[next];
                session.token += 1;
                let (token, left, request) = (
                    session.token,
                    session.phase_left_s,
                    session.request.expect("running"),
                );
                let busy = next.is_multiple_of(2);
                self.set_busy(idx, busy);
                self.schedule(
                    now + left,
                    Timer::PhaseEnd {
                        session: idx,
                        token,
                    },
                );
                let activity = if busy { Activity::Busy } else { Activity::Idle };
                self.send(Event::Activity { request, activity })
            }
            State::Detached => {
                if next >= session.plan.phases.len() {
                    session.state = State::Done;
                    session.token += 1;
                    self.next_in_chain(idx);
                    return Ok(());
                }
                session.phase = next;
                session.phase_left_s = session.plan.phases[next];
                self.start_waiting(idx)
            }
            State::Waiting | State::Done => Ok(()),
        }
    }

    fn set_busy(&mut self, idx: usize, busy: bool) {
        let now = self.now_s;
        let session = &mut self.sessions[idx];
        if session.busy != busy {
            let delta = if busy {
                session.plan.gpus as i64
            } else {
                -(session.plan.gpus as i64)
            };
            self.recorder.busy(session.plan.user, delta);
            session.busy = busy;
        }
        if !busy {
            session.idle_since_s = now;
            session.reclaim_warning_at_s = None;
        } else {
            session.reclaim_warning_at_s = None;
        }
    }

    /// The session leaves the allocator (exit, stop or reclaim): release its GPUs.
    fn finish(&mut self, idx: usize, detach: bool) -> Result<(), String> {
        self.set_busy(idx, false);
        let session = &mut self.sessions[idx];
        let (user, gpus) = (session.plan.user, session.plan.gpus);
        if let Some(request) = session.request {
            self.owners.retain(|_, owner| *owner != request);
        }
        session.token += 1;
        self.recorder.hold(user, -(gpus as i64));
        if detach {
            session.state = State::Detached;
            // The interrupted phase goes on without the GPU; the user comes back after it.
            let token = session.token;
            let left = (session.phase_started_s + session.phase_left_s - self.now_s).max(0.0);
            self.schedule(
                self.now_s + left,
                Timer::PhaseEnd {
                    session: idx,
                    token,
                },
            );
        } else {
            session.state = State::Done;
            self.next_in_chain(idx);
        }
        Ok(())
    }

    fn send(&mut self, event: Event) -> Result<(), String> {
        let mut pending = VecDeque::from([event]);
        while let Some(event) = pending.pop_front() {
            let now = Timestamp::from_secs_f64(self.now_s);
            let decisions = self.allocator.handle(now, event.clone());
            for decision in decisions {
                self.apply(decision, &mut pending)?;
            }
            if self.options.check_invariants {
                self.allocator
                    .check_invariants()
                    .map_err(|violation| format!("after {event:?}: {violation}"))?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, decision: Decision, pending: &mut VecDeque<Event>) -> Result<(), String> {
        let now = self.now_s;
        let Some(&idx) = self.by_request.get(&decision.request()) else {
            return Err(format!("decision for an unknown request: {decision}"));
        };
        match decision {
            Decision::Place { request, gpus } => {
                for gpu in &gpus {
                    if let Some(other) = self.owners.insert(*gpu, request) {
                        return Err(format!(
                            "GPU {} granted to {request} while {other} holds it",
                            gpu.0
                        ));
                    }
                }
                self.waiting.remove(&idx);
                let user = self.sessions[idx].plan.user;
                if let Some(cause) = self.newcomer_cause.remove(&user) {
                    let waited = now - self.sessions[idx].asked_s;
                    if let (Some(diagnostics), true) = (&mut self.diagnostics, waited > 60.0) {
                        diagnostics.slow_newcomer(cause);
                    }
                }
                let session = &mut self.sessions[idx];
                if !session.ever_placed {
                    session.ever_placed = true;
                    self.recorder.session_placed(now);
                }
                session.queued = false;
                session.state = State::Running;
                session.phase_started_s = now;
                session.token += 1;
                let (user, count, asked, token, left) = (
                    session.plan.user,
                    session.plan.gpus,
                    session.asked_s,
                    session.token,
                    session.phase_left_s,
                );
                self.recorder.want(user, -(count as i64), now);
                self.recorder.hold(user, count as i64);
                self.recorder.request_served(user, asked, now);
                self.set_busy(idx, true);
                self.schedule(
                    now + left,
                    Timer::PhaseEnd {
                        session: idx,
                        token,
                    },
                );
                pending.push_back(Event::Activity {
                    request,
                    activity: Activity::Busy,
                });
            }
            Decision::Queue { .. } | Decision::QueuePositionChanged { .. } => {}
            Decision::Refuse { reason, .. } => {
                if let (Some(diagnostics), true) =
                    (&mut self.diagnostics, in_window(self.workload, now))
                {
                    diagnostics.refused(reason.code());
                }
                if matches!(reason, RefuseReason::GpuQuotaExhausted { .. }) {
                    self.waiting.remove(&idx);
                    let asked = self.sessions[idx].asked_s;
                    if let (Some(diagnostics), true) =
                        (&mut self.diagnostics, in_window(self.workload, asked))
                    {
                        diagnostics.unserved("refused gpu_quota_exhausted".to_owned());
                    }
                } else {
                    self.waiting.insert(idx, WaitKind::Refused(reason.code()));
                }
                let session = &mut self.sessions[idx];
                session.queued = false;
                let token = session.token;
                match reason {
                    RefuseReason::GpuQuotaExhausted { retry_at } => {
                        self.recorder.refused(session.plan.user, true);
                        let (user, gpus, asked) =
                            (session.plan.user, session.plan.gpus, session.asked_s);
                        session.state = State::Done;
                        session.token += 1;
                        self.recorder.want(user, -(gpus as i64), now);
                        self.recorder.request_unserved(user, asked);
                        if let Some(chain) = session.chain {
                            let at = retry_at
                                .map_or(now + 3_600.0, |at| at.as_secs_f64().max(now + 60.0));
                            self.schedule(at, Timer::ChainNext { chain });
                        }
                    }
                    _ => {
                        self.recorder.refused(session.plan.user, false);
                        self.schedule(
                            now + RETRY_S,
                            Timer::Retry {
                                session: idx,
                                token,
                            },
                        );
                    }
                }
            }
            Decision::Warn {
                at,
                reason: WarnReason::IdleReclaim,
                ..
            } => {
                self.sessions[idx].reclaim_warning_at_s = Some(at.as_secs_f64());
            }
            Decision::Warn { .. } => {}
            Decision::Reclaim { reason, .. } => {
                let session = &self.sessions[idx];
                let idle_for = now - session.idle_since_s;
                let early = session
                    .reclaim_warning_at_s
                    .is_some_and(|at| now + 1e-3 < at);
                let wrong_busy = session.busy && reason != ReclaimReason::GpuRemoved;
                let wrong_grace = idle_for + 1e-3 < self.grace_s || early;
                let wrong_no_waiter = !self.recorder.reclaim_justified(session.plan.user);
                self.recorder
                    .reclaimed(now, wrong_busy, wrong_no_waiter, wrong_grace);
                self.finish(idx, true)?;
            }
            Decision::Stop {
                reason: StopReason::LifetimeReached,
                ..
            } if self.options.resume_after_lifetime => {
                self.recorder.stopped(now);
                self.finish(idx, true)?;
            }
            Decision::Stop { .. } => {
                let session = &self.sessions[idx];
                let left: f64 = (session.phase_started_s + session.phase_left_s - now).max(0.0)
                    + session.plan.phases[session.phase + 1..].iter().sum::<f64>();
                let dropped = f64::from(session.plan.gpus) * left;
                if let (Some(diagnostics), true) =
                    (&mut self.diagnostics, in_window(self.workload, now))
                {
                    diagnostics.dropped_by_stops += dropped;
                }
                self.recorder.stopped(now);
                self.finish(idx, false)?;
            }
        }
        Ok(())
    }
}

/// Busy GPU-seconds planned in the window over GPU-seconds present (see [`Diagnostics`]).
fn busy_planned_fraction(workload: &Workload) -> f64 {
    let busy_s = |plan: &SessionPlan| -> f64 { plan.phases.iter().step_by(2).sum() };
    let mut busy_gpu_s = 0.0;
    for session in &workload.sessions {
        if session.arrive_s >= workload.warmup_s && session.arrive_s < workload.horizon_s {
            busy_gpu_s += f64::from(session.gpus) * busy_s(session);
        }
    }
    for chain in &workload.chains {
        let (busy, total) = chain
            .sessions
            .iter()
            .fold((0.0, 0.0), |(busy, total), plan| {
                (
                    busy + f64::from(plan.gpus) * busy_s(plan),
                    total + plan.length_s(),
                )
            });
        let span = (workload.horizon_s - workload.warmup_s.max(chain.start_s)).max(0.0);
        if total > 0.0 {
            busy_gpu_s += busy / total * span;
        }
    }
    busy_gpu_s / ((workload.horizon_s - workload.warmup_s) * f64::from(workload.gpus))
}

fn in_window(workload: &Workload, at_s: f64) -> bool {
    at_s >= workload.warmup_s && at_s < workload.horizon_s
}
