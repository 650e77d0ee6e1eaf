"""A linearizability checker for histories of a key-value store, one register per key.

The search is Wing and Gong's, with Lowe's improvements as Porcupine implements them: walk the
history's call and return events in time order, linearize a pending operation whenever the
model allows it, backtrack when a return is reached whose operation could not be placed, and
memoize (set of linearized operations, register value) so that no state is explored twice. A
history is linearizable if and only if every key's sub-history is (linearizability is local).

Operations:
  Op(kind="write", key, value)       set key to value (value None: delete)
  Op(kind="read", key, value)        observed value (None: not found)
  Op(kind="cas", key, value, expected, succeeded)
                                     set key to value if it holds `expected` (None: absent);
                                     `succeeded` says whether it did
An operation whose outcome is unknown (a timeout, a dropped connection) has ret=None: it may have
taken effect at any time after its call, or never. Unknown reads observed nothing and are dropped.
"""
import dataclasses
import math
from collections import defaultdict
from typing import Optional


@dataclasses.dataclass
class Op:
    kind: str             # "write" or "read"
    key: str
    value: Optional[str]  # written or observed value; None means absent
    call: float           # invocation time
    ret: Optional[float]  # completion time; None if the outcome is unknown
    client: int = 0
    expected: Optional[str] = None     # cas: the value compared against
    succeeded: Optional[bool] = None   # cas: whether it applied (unknown if ret is None)

    def __str__(self):
        end = "?" if self.ret is None else f"{self.ret:.6f}"
        return f"[{self.call:.6f}, {end}] client {self.client}: {self.kind} {self.key}={self.value!r}"


class _Entry:
    __slots__ = ("op_id", "is_call", "time", "prev", "next", "match")

    def __init__(self, op_id, is_call, time):
        self.op_id = op_id
        self.is_call = is_call
        self.time = time
        self.prev = None
        self.next = None
        self.match = None  # the call's return entry


# The value of an unknown write nobody saw, kept because a failed compare-and-set may have seen
# it: its actual value cannot matter, since no read returned it and no compare expected it.
UNSEEN = object()


def _check_register(ops, initial=None):
    """True if `ops` (all on one key) are linearizable as a register that starts at `initial`."""
    # Unknown writes of UNSEEN are interchangeable: one sent earlier can go wherever a later one
    # can. They are placed in the order they were sent, so that the search never branches on
    # which of them took effect (which would be exponential in their number).
    unseen = sorted((i for i, op in enumerate(ops) if op.kind == "write" and op.value is UNSEEN),
                    key=lambda i: ops[i].call)
    unseen_rank = {op_id: n for n, op_id in enumerate(unseen)}
    unseen_placed = 0
    events = []
    for i, op in enumerate(ops):
        events.append(_Entry(i, True, op.call))
        events.append(_Entry(i, False, math.inf if op.ret is None else op.ret))
    # Calls before returns at equal times: operations that touch are treated as concurrent.
    events.sort(key=lambda e: (e.time, 0 if e.is_call else 1))
    calls = {}
    for e in events:
        if e.is_call:
            calls[e.op_id] = e
        else:
            calls[e.op_id].match = e
    head = _Entry(-1, False, -math.inf)
    prev = head
    for e in events:
        prev.next = e
        e.prev = prev
        prev = e

    def lift(call):
        call.prev.next = call.next
        if call.next is not None:
            call.next.prev = call.prev
        ret = call.match
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev

    def unlift(call):
        ret = call.match
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
        call.prev.next = call
        if call.next is not None:
            call.next.prev = call

    state = initial
    linearized = 0
    cache = set()
    stack = []
    entry = head.next
    while head.next is not None:
        if entry.is_call:
            op = ops[entry.op_id]
            if op.kind == "write":
                allowed = unseen_rank.get(entry.op_id, unseen_placed) == unseen_placed
                new_state = op.value
            elif op.kind == "cas" and op.ret is None:
                # Unknown: it applies where its compare holds, and changes nothing elsewhere;
                # one that never happened is the same as one placed last.
                allowed, new_state = True, op.value if state == op.expected else state
            elif op.kind == "cas" and op.succeeded:
                allowed, new_state = state == op.expected, op.value
            elif op.kind == "cas":
                allowed, new_state = state != op.expected, state
            else:
                allowed, new_state = op.value == state, state
            key = (linearized | (1 << entry.op_id), new_state)
            if allowed and key not in cache:
                cache.add(key)
                stack.append((entry, state))
                state = new_state
                linearized |= 1 << entry.op_id
                unseen_placed += entry.op_id in unseen_rank
                lift(entry)
                entry = head.next
            else:
                entry = entry.next
        else:
            if not stack:
                return False
            call, state = stack.pop()
            linearized &= ~(1 << call.op_id)
            unseen_placed -= call.op_id in unseen_rank
            unlift(call)
            entry = call.next
    return True


def check(ops):
    """Returns (ok, bad_keys): whether the history is linearizable, and the keys that are not."""
    # What someone saw: a read's value, and the value a compare-and-set expected (its client saw
    # it, or wrote it itself, perhaps by a write whose outcome it does not know).
    observed = {(op.key, op.value) for op in ops if op.kind == "read" and op.ret is not None}
    observed |= {(op.key, op.expected) for op in ops if op.kind == "cas"}
    # A failed compare-and-set saw that the key did not hold what it expected, which any value
    # nobody saw explains: until the last one of a key returned, its unknown writes count.
    last_failed_cas = defaultdict(lambda: -math.inf)
    for op in ops:
        if op.kind == "cas" and op.ret is not None and op.succeeded is False:
            last_failed_cas[op.key] = max(last_failed_cas[op.key], op.ret)
    by_key = defaultdict(list)
    for op in ops:
        if op.kind == "read" and op.ret is None:
            continue  # an unknown read observed nothing
        if op.kind in ("write", "cas") and op.ret is None and op.value is not None \
                and (op.key, op.value) not in observed:
            if op.call > last_failed_cas[op.key]:
                # Sent after the last failed compare, it can be taken as never having happened:
                # placed anywhere, it would have to be followed by another write before any read.
                # Dropping it keeps the verdict and keeps the search from branching on it.
                continue
            op = dataclasses.replace(op, value=UNSEEN)
        by_key[op.key].append(op)
    bad = [key for key, key_ops in sorted(by_key.items()) if not _check_register(key_ops)]
    return not bad, bad
