//! A linearizability checker: is there an order of a recorded history's operations,
//! each placed somewhere between its call and its return, in which a sequential model
//! gives every operation the output that was observed?
//!
//! The search is Wing and Gong's, with Lowe's memoization, as Porcupine implements it:
//! walk the calls in time order, try to linearize the first one whose call came before
//! every pending return, backtrack when a return is reached that nothing can explain, and
//! never visit the same (set of linearized operations, model state) twice. A history of
//! independent keys is checked one key at a time ([`check_by`]), which keeps each search
//! small (P-compositionality: a history is linearizable if and only if every key's
//! sub-history is).
//!
//! An operation whose outcome is unknown (a write that timed out: it may have been
//! applied, may still be, or never) has no return. It may take effect anywhere after its
//! call, or not at all; its output, if the model gives one, is not compared.
//!
//! The search is exponential in the worst case, so it is bounded by a step budget: past
//! it, the answer is [`Verdict::Undecided`] rather than a test that runs for ever.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A sequential specification: the object as if one operation ran at a time.
pub trait Model {
    /// The object's state; hashed to remember the states already tried.
    type State: Clone + Hash + Eq;
    /// What a call asks.
    type Input: Debug;
    /// What a call answers.
    type Output: PartialEq + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Runs `input` on `state`: the next state and what the call answers.
    fn step(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);
}

/// How a recorded call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<O> {
    /// It returned `output` at `at`.
    Returned {
        /// When the caller got the answer.
        at: Instant,
        /// The answer.
        output: O,
    },
    /// No answer the caller can trust (a timeout, a broken connection): it may have
    /// taken effect at any time after its call, or never.
    Unknown,
}

/// One call in a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation<I, O> {
    /// Who made it; only for reports (a client's calls never overlap anyway).
    pub client: usize,
    /// When it was called.
    pub call: Instant,
    /// What it asked.
    pub input: I,
    /// How it ended.
    pub outcome: Outcome<O>,
}

/// What the checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// An order exists.
    Linearizable,
    /// No order exists. `explanation` names the call that no order could place, with
    /// the calls that had to come before it.
    NotLinearizable {
        /// Human-readable: which call, and the longest order that worked.
        explanation: String,
    },
    /// The step budget ran out before an answer was found.
    Undecided {
        /// Steps taken.
        steps: u64,
    },
}

impl Verdict {
    /// Whether the history was shown linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Default step budget: ample for a few hundred operations per key, and a few seconds
/// at most in a debug build.
pub const DEFAULT_BUDGET: u64 = 5_000_000;

/// One call or return in the time-ordered list the search walks.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
}

/// The events as a doubly linked list over indices, so that a linearized operation's
/// call and return can be taken out and put back in O(1) on backtracking.
struct Events {
    events: Vec<Event>,
    prev: Vec<Option<usize>>,
    next: Vec<Option<usize>>,
    head: Option<usize>,
    /// Where each operation's call and return events are.
    call_of: Vec<usize>,
    return_of: Vec<Option<usize>>,
}

impl Events {
    fn new<I, O>(history: &[&Operation<I, O>]) -> Events {
        // Calls sort before returns at the same instant: the two operations are then
        // taken as concurrent, which can only accept more histories, never fewer.
        let mut timed: Vec<(Instant, bool, Event)> = Vec::new();
        for (op, o) in history.iter().enumerate() {
            timed.push((o.call, false, Event { op, call: true }));
            if let Outcome::Returned { at, .. } = o.outcome {
                timed.push((at.max(o.call), true, Event { op, call: false }));
            }
        }
        timed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let n = timed.len();
        let events: Vec<Event> = timed.into_iter().map(|(_, _, e)| e).collect();
        let mut call_of = vec![0; history.len()];
        let mut return_of = vec![None; history.len()];
        for (i, e) in events.iter().enumerate() {
            if e.call {
                call_of[e.op] = i;
            } else {
                return_of[e.op] = Some(i);
            }
        }
        Events {
            events,
            prev: (0..n).map(|i| i.checked_sub(1)).collect(),
            next: (0..n).map(|i| Some(i + 1).filter(|&j| j < n)).collect(),
            head: (n > 0).then_some(0),
            call_of,
            return_of,
        }
    }

    fn unlink(&mut self, i: usize) {
        match self.prev[i] {
            Some(p) => self.next[p] = self.next[i],
            None => self.head = self.next[i],
        }
        if let Some(n) = self.next[i] {
            self.prev[n] = self.prev[i];
        }
    }

    /// Puts `i` back where it was; only valid in the reverse order of `unlink`s.
    fn relink(&mut self, i: usize) {
        match self.prev[i] {
            Some(p) => self.next[p] = Some(i),
            None => self.head = Some(i),
        }
        if let Some(n) = self.next[i] {
            self.prev[n] = Some(i);
        }
    }

    /// Takes operation `op` out of the list (it has been linearized).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if let Some(r) = self.return_of[op] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.return_of[op] {
            self.relink(r);
        }
        self.relink(self.call_of[op]);
    }
}

/// An operation on model `M`.
type OpOf<M> = Operation<<M as Model>::Input, <M as Model>::Output>;

/// Checks `history` against `model` as one object, within `budget` steps.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: u64,
) -> Verdict {
    let ops: Vec<&Operation<M::Input, M::Output>> = history.iter().collect();
    search(model, &ops, budget)
}

/// Checks `history` one part at a time: the operations with the same `part(input)` (a
/// key) form an object of their own, checked against a fresh `model`. Sound only when
/// the model's parts are independent (each operation touches one key). Each part gets
/// `budget` steps. A part that is not linearizable makes the answer; else a part whose
/// budget ran out leaves the whole undecided.
pub fn check_by<M: Model, K: Ord>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    part: impl Fn(&M::Input) -> K,
    budget: u64,
) -> Verdict {
    let mut parts: std::collections::BTreeMap<K, Vec<&OpOf<M>>> = std::collections::BTreeMap::new();
    for op in history {
        parts.entry(part(&op.input)).or_default().push(op);
    }
    let mut undecided = None;
    for ops in parts.values() {
        match search(model, ops, budget) {
            Verdict::Linearizable => {}
            Verdict::Undecided { steps } => undecided = Some(Verdict::Undecided { steps }),
            refuted => return refuted,
        }
    }
    undecided.unwrap_or(Verdict::Linearizable)
}

fn search<M: Model>(model: &M, ops: &[&Operation<M::Input, M::Output>], budget: u64) -> Verdict {
    let mut events = Events::new(ops);
    // Known operations not yet linearized: the search succeeds when none is left (the
    // unknown ones still pending simply never took effect).
    let mut remaining =
        ops.iter().filter(|o| matches!(o.outcome, Outcome::Returned { .. })).count();
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut state = model.init();
    // The operations linearized so far, with the state before each.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    // The return that stopped the deepest attempt: the call no order could place.
    let mut stuck: Option<(usize, usize)> = None;
    let mut cursor = events.head;
    let mut steps = 0u64;
    while remaining > 0 {
        steps += 1;
        if steps > budget {
            return Verdict::Undecided { steps };
        }
        let Some(at) = cursor else {
            // Only calls of unknown operations are left past the last return; unreachable
            // while a known operation remains, but an end is an end.
            break;
        };
        let event = events.events[at];
        if event.call {
            let op = ops[event.op];
            let (next, output) = model.step(&state, &op.input);
            let fits = match &op.outcome {
                Outcome::Returned { output: observed, .. } => *observed == output,
                Outcome::Unknown => true,
            };
            let mut candidate = false;
            if fits {
                let mut bits = linearized.clone();
                bits[event.op / 64] |= 1 << (event.op % 64);
                candidate = seen.insert((bits.clone(), next.clone()));
                if candidate {
                    stack.push((event.op, std::mem::replace(&mut state, next)));
                    linearized = bits;
                    events.lift(event.op);
                    if matches!(op.outcome, Outcome::Returned { .. }) {
                        remaining -= 1;
                    }
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(op, _)| *op).collect();
                    }
                    cursor = events.head;
                }
            }
            if !candidate {
                cursor = events.next[at];
            }
        } else {
            // A return nothing before it could be placed ahead of: undo the last choice.
            if stuck.is_none_or(|(depth, _)| stack.len() > depth) {
                stuck = Some((stack.len(), event.op));
            }
            let Some((op, before)) = stack.pop() else {
                return refuted(ops, stuck.map_or(event.op, |(_, op)| op), &longest);
            };
            state = before;
            linearized[op / 64] &= !(1 << (op % 64));
            events.unlift(op);
            if matches!(ops[op].outcome, Outcome::Returned { .. }) {
                remaining += 1;
            }
            cursor = events.next[events.call_of[op]];
        }
    }
    Verdict::Linearizable
}

fn refuted<I: Debug, O: Debug>(
    ops: &[&Operation<I, O>],
    stuck: usize,
    longest: &[usize],
) -> Verdict {
    let describe = |i: usize| {
        let op = ops[i];
        match &op.outcome {
            Outcome::Returned { output, .. } => {
                format!("client {}: {:?} -> {:?}", op.client, op.input, output)
            }
            Outcome::Unknown => format!("client {}: {:?} -> unknown", op.client, op.input),
        }
    };
    // The end of the longest order is what the stuck call had to follow; the start
    // of a long history would only bury it.
    const SHOWN: usize = 8;
    let skipped = longest.len().saturating_sub(SHOWN);
    let order: Vec<String> = longest[skipped..].iter().map(|&i| describe(i)).collect();
    Verdict::NotLinearizable {
        explanation: format!(
            "no order places [{}] before its return; the longest order found places {} \
             calls, ending [{}]",
            describe(stuck),
            longest.len(),
            order.join(", ")
        ),
    }
}

/// A key-value store of integers, where a missing key reads as `None`: the model the
/// replication tests check their histories against.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyValue;

/// A call on a [`KeyValue`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Sets the key to the value.
    Put(String, i64),
    /// Reads the key.
    Get(String),
}

impl KvInput {
    /// The key the call touches: the part [`check_by`] checks it with.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Put(k, _) | KvInput::Get(k) => k,
        }
    }
}

/// What a [`KeyValue`] call answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A put was applied.
    Written,
    /// A get read this.
    Value(Option<i64>),
}

impl Model for KeyValue {
    type State = std::collections::BTreeMap<String, i64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        Self::State::new()
    }

    fn step(&self, state: &Self::State, input: &KvInput) -> (Self::State, KvOutput) {
        match input {
            KvInput::Put(k, v) => {
                let mut next = state.clone();
                next.insert(k.clone(), *v);
                (next, KvOutput::Written)
            }
            KvInput::Get(k) => (state.clone(), KvOutput::Value(state.get(k).copied())),
        }
    }
}

/// A history recorded by concurrent clients: each call takes its time before it is
/// sent and after its answer comes back, so the recorded interval contains the real one.
#[derive(Debug)]
pub struct History<I, O> {
    ops: Arc<Mutex<Vec<Operation<I, O>>>>,
}

impl<I, O> Clone for History<I, O> {
    fn clone(&self) -> Self {
        History { ops: self.ops.clone() }
    }
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        History { ops: Arc::new(Mutex::new(Vec::new())) }
    }
}

/// A call made and not yet answered: [`Call::returned`] or [`Call::unknown`] records it.
#[must_use = "a call is recorded only once its outcome is"]
pub struct Call<I, O> {
    history: History<I, O>,
    client: usize,
    at: Instant,
    input: I,
}

impl<I, O> History<I, O> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes the time of a call by `client` about to be made.
    pub fn call(&self, client: usize, input: I) -> Call<I, O> {
        Call { history: self.clone(), client, at: Instant::now(), input }
    }

    /// Every operation recorded so far.
    pub fn operations(&self) -> Vec<Operation<I, O>>
    where
        I: Clone,
        O: Clone,
    {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Operation<I, O>>> {
        // A client that panicked left a complete vector behind: pushes do not tear.
        self.ops.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<I, O> Call<I, O> {
    /// What the call asks.
    pub fn input(&self) -> &I {
        &self.input
    }

    /// Records that it answered `output`, now.
    pub fn returned(self, output: O) {
        let outcome = Outcome::Returned { at: Instant::now(), output };
        self.record(outcome);
    }

    /// Records that its outcome is unknown (it may or may not have taken effect).
    pub fn unknown(self) {
        self.record(Outcome::Unknown);
    }

    /// Forgets the call: for one known to have had no effect (a refusal before
    /// anything was sent, a read that failed).
    pub fn discard(self) {}

    fn record(self, outcome: Outcome<O>) {
        let op = Operation { client: self.client, call: self.at, input: self.input, outcome };
        self.history.lock().push(op);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Builds operations on a timeline in milliseconds from one origin.
    struct Timeline(Instant);

    impl Timeline {
        fn new() -> Self {
            Timeline(Instant::now())
        }

        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }

        fn put(
            &self,
            client: usize,
            k: &str,
            v: i64,
            call: u64,
            ret: impl Into<Option<u64>>,
        ) -> Op {
            let outcome = match ret.into() {
                Some(ret) => Outcome::Returned { at: self.at(ret), output: KvOutput::Written },
                None => Outcome::Unknown,
            };
            Operation { client, call: self.at(call), input: KvInput::Put(k.into(), v), outcome }
        }

        fn get(&self, client: usize, k: &str, v: Option<i64>, call: u64, ret: u64) -> Op {
            Operation {
                client,
                call: self.at(call),
                input: KvInput::Get(k.into()),
                outcome: Outcome::Returned { at: self.at(ret), output: KvOutput::Value(v) },
            }
        }
    }

    type Op = Operation<KvInput, KvOutput>;

    fn verdict(history: &[Op]) -> Verdict {
        let whole = check(&KeyValue, history, DEFAULT_BUDGET);
        let by_key = check_by(&KeyValue, history, |i| i.key().to_owned(), DEFAULT_BUDGET);
        assert_eq!(whole.is_linearizable(), by_key.is_linearizable(), "{whole:?} / {by_key:?}");
        whole
    }

    #[test]
    fn a_sequential_history_that_reads_what_was_written_is_linearizable() {
        let t = Timeline::new();
        let history = [
            t.get(0, "x", None, 0, 1),
            t.put(0, "x", 1, 2, 3),
            t.get(1, "x", Some(1), 4, 5),
            t.put(1, "y", 2, 6, 7),
            t.get(0, "y", Some(2), 8, 9),
            t.get(0, "x", Some(1), 10, 11),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_finished_write_is_caught() {
        let t = Timeline::new();
        let history = [
            t.put(0, "x", 1, 0, 1),
            t.put(0, "x", 2, 2, 3),
            // Began after the second write was acknowledged, yet saw the first.
            t.get(1, "x", Some(1), 4, 5),
        ];
        match verdict(&history) {
            Verdict::NotLinearizable { explanation } => {
                assert!(explanation.contains("Get(\"x\")"), "{explanation}");
            }
            other => panic!("a stale read passed: {other:?}"),
        }
    }

    #[test]
    fn overlapping_calls_pass_when_one_order_explains_them() {
        let t = Timeline::new();
        // Both writes overlap both reads; only "1 then 2" explains reading 1, then 2.
        let history = [
            t.put(0, "x", 1, 0, 10),
            t.put(1, "x", 2, 1, 10),
            t.get(2, "x", Some(1), 2, 4),
            t.get(2, "x", Some(2), 5, 9),
        ];
        assert_eq!(verdict(&history), Verdict::Linearizable);
        // The same reads in the other order need 2 then 1 then 2 again: impossible.
        let history = [
            t.put(0, "x", 1, 0, 10),
            t.put(1, "x", 2, 1, 10),
            t.get(2, "x", Some(2), 2, 4),
            t.get(2, "x", Some(1), 5, 7),
            t.get(2, "x", Some(2), 8, 9),
        ];
        assert!(!verdict(&history).is_linearizable());
    }

    #[test]
    fn a_write_of_unknown_outcome_may_take_effect_late_or_never() {
        let t = Timeline::new();
        // Timed out, yet seen long after it was called: it took effect late.
        let late = [
            t.put(0, "x", 1, 0, 1),
            t.put(1, "x", 2, 2, None),
            t.get(0, "x", Some(1), 50, 51),
            t.get(0, "x", Some(2), 100, 101),
        ];
        assert_eq!(verdict(&late), Verdict::Linearizable);
        // Never seen: it never took effect.
        let never =
            [t.put(0, "x", 1, 0, 1), t.put(1, "x", 2, 2, None), t.get(0, "x", Some(1), 50, 51)];
        assert_eq!(verdict(&never), Verdict::Linearizable);
        // But not before it was called.
        let early = [t.get(0, "x", Some(2), 0, 1), t.put(1, "x", 2, 2, None)];
        assert!(!verdict(&early).is_linearizable());
        // And once seen, it cannot be undone.
        let undone = [
            t.put(0, "x", 1, 0, 1),
            t.put(1, "x", 2, 2, None),
            t.get(0, "x", Some(2), 10, 11),
            t.get(0, "x", Some(1), 20, 21),
        ];
        assert!(!verdict(&undone).is_linearizable());
    }

    #[test]
    fn the_budget_bounds_the_search() {
        let t = Timeline::new();
        // Many overlapping writes and one impossible read: a large search.
        let mut history: Vec<Op> = (0..40).map(|i| t.put(i, "x", i as i64, 0, 100)).collect();
        history.push(t.get(99, "x", Some(1000), 1, 99));
        assert!(matches!(check(&KeyValue, &history, 1_000), Verdict::Undecided { .. }));
    }

    #[test]
    fn a_recorded_history_keeps_each_call_between_its_call_and_its_answer() {
        let history: History<KvInput, KvOutput> = History::new();
        let call = history.call(0, KvInput::Put("x".into(), 1));
        call.returned(KvOutput::Written);
        history.call(1, KvInput::Put("x".into(), 2)).unknown();
        history.call(1, KvInput::Get("x".into())).discard();
        let ops = history.operations();
        assert_eq!(ops.len(), 2);
        assert!(matches!(ops[0].outcome, Outcome::Returned { at, .. } if at >= ops[0].call));
        assert_eq!(ops[1].outcome, Outcome::Unknown);
        assert_eq!(check(&KeyValue, &ops, DEFAULT_BUDGET), Verdict::Linearizable);
    }
}
