// WatchHub: the key-value store's recent changes, and everyone waiting for them: watch streams,
// blocking queries, and the leader's expiry of keys past their deadline.
//
// History: the store tells the hub every change as it applies it (fsm::KvObserver). The hub
// keeps the most recent ones, bounded by count and bytes: every change after compacted_index()
// is known one by one. After a restart, or a snapshot restored, history begins at the index the
// store then held. The history is the only buffer: a watch is a cursor into it, so a watcher
// costs the same few hundred bytes however far behind it is, and a watcher that does not read
// (a slow client: TCP pushes back) holds nothing. Once the history moves past its cursor, its
// stream ends with {"error": "slow", "resume_from": N}.
//
// Watchers and blocking queries are indexed by prefix (kv/prefix_index.h): a change costs the
// hub the few it concerns, not a look at every one, and a watcher whose prefix saw no change
// skips the history in between at once.
//
// Threads: applied() and restored() come from the apply thread and only queue the changes; the
// hub's own thread takes them into the history and wakes the waiting, so no watcher slows the
// writes. Stream pieces are taken on server threads. Blocking queries' callbacks, and progress
// and expiry, run on the hub's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "fsm/kv_store.h"
#include "kv/prefix_index.h"
#include "raftnginx/http.h"
#include "raftnginx/replica.h"
#include "util/defaults.h"

namespace raftnginx::kv {

struct WatchHubOptions {
  size_t history_events = defaults::kWatchHistoryEvents;
  uint64_t history_bytes = defaults::kWatchHistoryBytes;
  size_t max_watchers = defaults::kMaxWatchers;  // streams and blocking queries together
  std::chrono::milliseconds progress_interval = defaults::kWatchProgressInterval;
  std::chrono::milliseconds expiry_interval = defaults::kExpiryInterval;
  size_t piece_bytes = 64 << 10;  // about the most one stream piece carries
};

enum class WatchFormat { kNdjson, kEventStream };

class WatchHub final : public fsm::KvObserver, public std::enable_shared_from_this<WatchHub> {
 public:
  // Starts the hub's thread. `store` outlives the hub's use of it (attach(nullptr) ends that).
  static std::shared_ptr<WatchHub> start(const fsm::KvStore* store, WatchHubOptions options);
  ~WatchHub() override;

  void applied(std::vector<fsm::KvEvent> events, raft::Index last) override;
  void restored(raft::Index index) override;

  // The node: while it leads, the hub proposes the expiry of keys past their deadline. Null
  // stops the hub: no proposal after it returns, every stream ends, every blocking query is
  // answered.
  void attach(Replica* replica);

  // A stream of the changes to keys under `prefix` after index `from` - 1 (0: from now on).
  // Compacted if the changes at `from` are no longer known (compacted_index() says how far);
  // Busy if too many already wait.
  Result<std::shared_ptr<http::BodyStream>> watch(std::string prefix, raft::Index from,
                                                  WatchFormat format);
  // Calls `done` once a key under `prefix` (`key` exactly, if `exact`) changed at an index
  // after `index`, or when `deadline` passes: at once if it is known to have changed already,
  // or if the changes after `index` are no longer known. Busy if too many already wait.
  Status wait(std::string prefix, bool exact, raft::Index index,
              std::chrono::steady_clock::time_point deadline, std::function<void()> done);

  // Every change after this index is known.
  raft::Index compacted_index() const;
  size_t watchers() const;

  class Stream;

 private:
  struct Change {
    fsm::KvEvent event;
    size_t bytes = 0;
    std::string line;  // its JSON, made once, when a watcher first needs it
  };
  using Clock = std::chrono::steady_clock;
  struct Waiter {
    std::string prefix;
    bool exact = false;
    raft::Index index = 0;
    Clock::time_point deadline;
    std::function<void()> done;
    std::multimap<Clock::time_point, std::shared_ptr<Waiter>>::iterator by_deadline;
    std::multimap<raft::Index, std::shared_ptr<Waiter>>::iterator by_index;
  };

  // What the apply thread hands over, and what wakes the hub's thread.
  struct Queue {
    std::vector<fsm::KvEvent> events;
    uint64_t bytes = 0;
    raft::Index last = 0;
    std::optional<raft::Index>
        restored_at;       // a snapshot replaced the state (or the queue overflowed)
    bool rethink = false;  // a new deadline, or a replica: the thread looks at its timing again
    bool stopping = false;
  };

  WatchHub(const fsm::KvStore* store, WatchHubOptions options);
  void run();
  // Takes the queued changes into the history; the waiters they wake go to `woken`. Under mu_.
  void take_incoming(Queue taken, std::vector<std::function<void()>>* woken);
  // Hands their next piece to the parked streams a change concerns, and, at most every
  // `sweep` apart, to every parked stream (progress). Under mu_.
  void wake_streams(Clock::time_point now, std::vector<std::function<void()>>* woken);
  void wake(Stream& s, Clock::time_point now, std::vector<std::function<void()>>* woken);
  void drop(const std::shared_ptr<Waiter>& w);  // under mu_
  // What happened at index `from` concerns `s`: if it is parked, it goes to ready_. Under mu_.
  void mark_ready(Stream& s, raft::Index from);
  void expire_due();
  // The next piece for `s`, or "" if it has nothing to send now. Under mu_.
  std::string piece_for(Stream& s, Clock::time_point now);
  const std::string& line_of(Change& c);
  void unlist(Stream& s);   // under mu_
  void started_waiting();   // a stream parked, or a blocking query waits, or a replica came
  void counted();           // under mu_: the streams or waiters changed
  size_t watching() const;  // under mu_
  bool matches(const Waiter& w, const std::string& key) const;

  const fsm::KvStore* const store_;
  const WatchHubOptions options_;

  // The apply thread takes only this lock (never mu_), so no watcher can hold up a write.
  // Order: mu_, then queue_mu_.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  Queue queue_;
  std::atomic<size_t> waiting_{0};  // streams and waiters: whether a change should wake the hub

  mutable std::mutex mu_;
  bool stopping_ = false;
  // The history: changes after base_, up to last_.
  std::deque<Change> history_;
  uint64_t history_bytes_ = 0;
  raft::Index base_ = 0;
  raft::Index last_ = 0;
  std::list<std::shared_ptr<Stream>> streams_;  // open streams; parked ones wait for changes
  PrefixIndex<Stream*> stream_index_;           // the listed streams
  std::vector<std::shared_ptr<Stream>> ready_;  // parked ones a change concerns
  Clock::time_point next_sweep_;
  // Blocking queries: answered at their deadline, or once the history no longer reaches their
  // index, or at a change under their prefix.
  std::multimap<Clock::time_point, std::shared_ptr<Waiter>> waiters_;
  std::multimap<raft::Index, std::shared_ptr<Waiter>> waiters_by_index_;
  PrefixIndex<std::shared_ptr<Waiter>> waiter_index_;
  Replica* replica_ = nullptr;
  std::set<std::string> expiring_;  // keys whose expiry is proposed and not yet applied
  Clock::time_point next_expiry_check_;
  std::thread thread_;
};

}  // namespace raftnginx::kv
