"""The checker must accept linearizable histories and reject known violations, before its
verdict on chaos runs means anything."""
import unittest

from chaos import check_watches, watch_segment
from linearizability import Op, check


def w(key, value, call, ret, client=0):
    return Op("write", key, value, call, ret, client)


def r(key, value, call, ret, client=0):
    return Op("read", key, value, call, ret, client)


def cas(key, expected, value, succeeded, call, ret, client=0):
    return Op("cas", key, value, call, ret, client, expected=expected, succeeded=succeeded)


class Checker(unittest.TestCase):
    def test_sequential_history_is_linearizable(self):
        ok, _ = check([w("k", "1", 0, 1), r("k", "1", 2, 3), w("k", "2", 4, 5), r("k", "2", 6, 7)])
        self.assertTrue(ok)

    def test_stale_read_after_a_completed_write_is_caught(self):
        ok, bad = check([w("k", "1", 0, 1), w("k", "2", 2, 3), r("k", "1", 4, 5)])
        self.assertFalse(ok)
        self.assertEqual(bad, ["k"])

    def test_lost_acknowledged_write_is_caught(self):
        # The write of 2 was acknowledged, yet a later read sees the state before it.
        ok, _ = check([w("k", "1", 0, 1), w("k", "2", 2, 3), r("k", None, 10, 11)])
        self.assertFalse(ok)

    def test_read_of_a_value_never_written_is_caught(self):
        ok, _ = check([w("k", "1", 0, 1), r("k", "7", 2, 3)])
        self.assertFalse(ok)

    def test_an_unknown_write_that_a_compare_and_set_found_took_effect(self):
        # Chaos seed 748156129: the put of 2 timed out (its leader was killed), yet committed;
        # no read saw it, but the compare-and-set that replaced it did.
        ok, _ = check([w("k", "1", 0, 1), w("k", "2", 2, None), cas("k", "2", "3", True, 4, 5),
                       r("k", "3", 6, 7)])
        self.assertTrue(ok)
        # Without the write, the compare-and-set could not have found 2.
        ok, _ = check([w("k", "1", 0, 1), cas("k", "2", "3", True, 4, 5)])
        self.assertFalse(ok)

    def test_compare_and_set_succeeds_only_on_the_value_it_compares(self):
        ok, _ = check([w("k", "1", 0, 1), cas("k", "1", "2", True, 2, 3), r("k", "2", 4, 5),
                       cas("k", "1", "3", False, 6, 7), r("k", "2", 8, 9)])
        self.assertTrue(ok)
        # Two compare-and-sets from the same value cannot both succeed.
        ok, _ = check([w("k", "1", 0, 1), cas("k", "1", "2", True, 2, 5),
                       cas("k", "1", "3", True, 3, 6)])
        self.assertFalse(ok)
        # One that failed although the value held, with nothing concurrent, is caught.
        ok, _ = check([w("k", "1", 0, 1), cas("k", "1", "2", False, 2, 3)])
        self.assertFalse(ok)
        # An unknown one may have applied: a later read of its value is fine.
        ok, _ = check([cas("k", None, "x", None, 0, None), r("k", "x", 5, 6)])
        self.assertTrue(ok)
        # ... but only if its compare could have held.
        ok, _ = check([w("k", "1", 0, 1), cas("k", None, "x", None, 2, None), r("k", "x", 5, 6)])
        self.assertFalse(ok)

    def test_concurrent_operations_may_take_either_order(self):
        # The read overlaps both writes: it may see either value.
        for seen in ("1", "2"):
            ok, _ = check([w("k", "1", 0, 5), w("k", "2", 1, 6), r("k", seen, 2, 7)])
            self.assertTrue(ok, seen)

    def test_reads_must_agree_on_one_order(self):
        # Two writes overlap; one reader sees 1 then 2, another sees 2 then 1, after both ended:
        # no single order explains both.
        ops = [w("k", "1", 0, 5), w("k", "2", 0, 5),
               r("k", "1", 6, 7, 1), r("k", "2", 8, 9, 1),
               r("k", "2", 6, 7, 2), r("k", "1", 8, 9, 2)]
        self.assertFalse(check(ops)[0])

    def test_unknown_write_may_or_may_not_have_happened(self):
        self.assertTrue(check([w("k", "1", 0, 1), w("k", "2", 2, None), r("k", "1", 3, 4)])[0])
        self.assertTrue(check([w("k", "1", 0, 1), w("k", "2", 2, None), r("k", "2", 3, 4)])[0])
        # ... but once it was seen, it cannot be unseen.
        self.assertFalse(check([w("k", "1", 0, 1), w("k", "2", 2, None), r("k", "2", 3, 4),
                                r("k", "1", 5, 6)])[0])

    def test_many_unknown_writes_nobody_saw_are_cheap(self):
        ops = [w("k", "0", 0, 1)]
        for i in range(2000):
            ops.append(w("k", f"lost{i}", 2 + i, None))
        ops.append(r("k", "0", 5000, 5001))
        self.assertTrue(check(ops)[0])

    def test_an_unknown_write_nobody_read_can_explain_a_failed_compare(self):
        # Chaos seed 594973348: after an acknowledged delete, puts timed out while the leader was
        # killed; one committed, so a compare-and-set "only if absent" failed. No read saw it.
        ok, _ = check([w("k", None, 0, 1), w("k", "lost", 2, None),
                       cas("k", None, "x", False, 3, 4)])
        self.assertTrue(ok)
        # Without a write that could have landed before it, the failure is caught.
        ok, _ = check([w("k", None, 0, 1), cas("k", None, "x", False, 3, 4),
                       w("k", "late", 5, None)])
        self.assertFalse(ok)

    def test_an_unknown_write_a_compare_and_set_expected_is_kept(self):
        # The client wrote b (outcome unknown) and then compared against b, also unknown; a read
        # then saw the compare's value: both took effect.
        ok, _ = check([w("k", "a", 0, 1), w("k", "b", 2, None), cas("k", "b", "c", None, 3, None),
                       r("k", "c", 4, 5)])
        self.assertTrue(ok)

    def test_many_unknown_writes_before_a_failed_compare_are_cheap(self):
        # Each could be the one the failed compare saw; the search must not try every subset.
        ops = [w("k", "x", 0, 1)]
        for i in range(40):
            ops.append(w("k", f"lost{i}", 2 + i, None))
        ops += [r("k", "x", 100, 101), cas("k", "z", "y", False, 102, 103), r("k", "x", 104, 105)]
        self.assertTrue(check(ops)[0])
        self.assertFalse(check(ops + [r("k", "never", 106, 107)])[0])

    def test_an_unknown_delete_can_explain_a_missing_key(self):
        self.assertTrue(check([w("k", "1", 0, 1), w("k", None, 2, None), r("k", None, 3, 4)])[0])

    def test_unknown_write_cannot_take_effect_before_it_was_sent(self):
        self.assertFalse(check([r("k", "2", 0, 1), w("k", "2", 2, None)])[0])

    def test_deletes_and_keys_are_independent(self):
        ops = [w("a", "1", 0, 1), w("a", None, 2, 3), r("a", None, 4, 5),
               w("b", "x", 0, 1), r("b", "y", 2, 3)]
        ok, bad = check(ops)
        self.assertFalse(ok)
        self.assertEqual(bad, ["b"])

    def test_a_long_concurrent_history_is_checked_quickly(self):
        ops = []
        t = 0.0
        for i in range(400):
            ops.append(w("k", str(i), t, t + 3))
            ops.append(r("k", str(i), t + 2.5, t + 4))
            t += 1.0
        self.assertTrue(check(ops)[0])


def change(index, key, value="v", kind="put"):
    return {"index": index, "type": kind, "key": key, "value": value}


def segment(start, events, progress=0, gap=0):
    seg = watch_segment("node1", start)
    seg.update(events=events, progress=progress, gap=gap)
    return seg


class WatchCheck(unittest.TestCase):
    """The chaos tool's check of what watchers saw must catch a gap, a duplicate and two nodes
    disagreeing, and accept a watcher that moved between nodes without either."""

    puts = [(3, "a", "1"), (5, "b", "2")]

    def test_a_watcher_that_moved_between_nodes_passes(self):
        first = segment(1, [change(3, "a", "1")], progress=4)
        second = segment(5, [change(5, "b", "2")], progress=5)
        self.assertEqual(check_watches({0: [first, second]}, self.puts), (2, 0))

    def test_a_missed_acknowledged_put_is_caught(self):
        self.assertEqual(check_watches({0: [segment(1, [], progress=5)]}, self.puts)[1], 2)

    def test_a_change_seen_twice_or_out_of_order_is_caught(self):
        twice = segment(1, [change(3, "a", "1"), change(3, "a", "1"), change(5, "b", "2")],
                        progress=5)
        self.assertGreater(check_watches({0: [twice]}, self.puts)[1], 0)
        backwards = segment(1, [change(5, "b", "2"), change(3, "a", "1")], progress=5)
        self.assertGreater(check_watches({0: [backwards]}, self.puts)[1], 0)

    def test_two_watchers_that_disagree_are_caught(self):
        one = segment(1, [change(3, "a", "1"), change(5, "b", "2")], progress=5)
        other = segment(1, [change(3, "a", "other"), change(5, "b", "2")], progress=5)
        self.assertGreater(check_watches({0: [one], 1: [other]}, [])[1], 0)

    def test_a_gap_a_node_declared_is_not_a_miss(self):
        after_gap = segment(4, [change(5, "b", "2")], progress=5)
        declared = segment(1, [], gap=3)
        self.assertEqual(check_watches({0: [declared, after_gap]}, self.puts)[1], 0)


if __name__ == "__main__":
    unittest.main()
