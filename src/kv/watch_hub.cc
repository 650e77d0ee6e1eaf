#include "kv/watch_hub.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kv/gateway_files.h"
#include "util/clock.h"

namespace raftnginx::kv {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* type_name(fsm::KvEvent::Type type) {
  switch (type) {
    case fsm::KvEvent::Type::kPut:
      return "put";
    case fsm::KvEvent::Type::kDelete:
      return "delete";
    case fsm::KvEvent::Type::kExpire:
      return "expire";
  }
  return "?";
}

// A message that is not a change (progress, an error) in the stream's format.
std::string notice(WatchFormat format, const char* event, const json& body) {
  if (format == WatchFormat::kNdjson)
    return dump(body) + "\n";
  return std::string("event: ") + event + "\ndata: " + dump(body) + "\n\n";
}

// What a change costs the history: its bytes twice (the change, and its JSON once a watcher
// asked for it), and some for the bookkeeping.
size_t change_bytes(const fsm::KvEvent& e) {
  return 256 +
         2 * (e.key.size() + e.record.value.size() + (e.prev_value ? e.prev_value->size() : 0));
}

}  // namespace

class WatchHub::Stream final : public http::BodyStream {
 public:
  Stream(std::weak_ptr<WatchHub> hub, std::string prefix, raft::Index cursor, WatchFormat format)
      : hub_(std::move(hub)), prefix(std::move(prefix)), cursor(cursor), format(format) {}

  void next(std::function<void(std::string)> piece) override {
    std::shared_ptr<WatchHub> hub = hub_.lock();
    std::string out;
    if (hub) {
      std::lock_guard lock(hub->mu_);
      if (!ended && !hub->stopping_) {
        out = hub->piece_for(*this, Clock::now());
        if (out.empty()) {
          parked = std::move(piece);
          hub->started_waiting();
          return;
        }
      }
    }
    piece(std::move(out));  // "" ends the body
  }

  void cancel() override {
    if (std::shared_ptr<WatchHub> hub = hub_.lock()) {
      std::lock_guard lock(hub->mu_);
      parked = nullptr;
      hub->unlist(*this);
    }
  }

  // The hub's, under its lock.
  const std::weak_ptr<WatchHub> hub_;
  const std::string prefix;
  raft::Index cursor;  // the first index not yet looked at
  const WatchFormat format;
  std::function<void(std::string)> parked;  // the server waits for a piece
  raft::Index match_from = 0;  // parked: the first change since that concerns it (0: none yet)
  // When it was last sent something; none yet: a progress goes out first (however long the
  // machine has been up: the steady clock's epoch is its boot).
  std::optional<Clock::time_point> last_sent;
  bool ended = false;  // its last piece (an error) is out
  std::optional<std::list<std::shared_ptr<Stream>>::iterator> listed;  // in streams_
};

std::shared_ptr<WatchHub> WatchHub::start(const fsm::KvStore* store, WatchHubOptions options) {
  std::shared_ptr<WatchHub> hub(new WatchHub(store, options));
  hub->thread_ = std::thread([h = hub.get()] { h->run(); });
  return hub;
}

WatchHub::WatchHub(const fsm::KvStore* store, WatchHubOptions options)
    : store_(store), options_(options) {
  base_ = last_ = queue_.last = store->applied_index();
}

WatchHub::~WatchHub() {
  attach(nullptr);
}

void WatchHub::applied(std::vector<fsm::KvEvent> events, raft::Index last) {
  std::lock_guard lock(queue_mu_);
  for (fsm::KvEvent& e : events) {
    queue_.bytes += change_bytes(e);
    queue_.events.push_back(std::move(e));
  }
  queue_.last = std::max(queue_.last, last);
  if (queue_.events.size() > options_.history_events || queue_.bytes > options_.history_bytes) {
    // More than the history could keep: the changes up to here are not known one by one, as
    // after a snapshot, and watchers behind them hear they are too slow.
    queue_.events.clear();
    queue_.bytes = 0;
    queue_.restored_at = queue_.last;
    queue_cv_.notify_one();
    return;
  }
  // Nobody to tell: the hub takes the changes in on its next round, and the apply thread saves
  // a wake-up per batch.
  if (waiting_.load() > 0)
    queue_cv_.notify_one();
}

void WatchHub::restored(raft::Index index) {
  std::lock_guard lock(queue_mu_);
  queue_.events.clear();  // older than the snapshot
  queue_.bytes = 0;
  queue_.last = index;
  queue_.restored_at = index;
  queue_cv_.notify_one();
}

void WatchHub::attach(Replica* replica) {
  std::unique_lock lock(mu_);
  if (replica != nullptr) {
    replica_ = replica;
    started_waiting();
    return;
  }
  replica_ = nullptr;
  stopping_ = true;
  {
    std::lock_guard queue_lock(queue_mu_);
    queue_.stopping = true;
    queue_cv_.notify_one();
  }
  lock.unlock();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id())
    thread_.join();
  std::vector<std::function<void()>> ended;
  lock.lock();
  for (auto& s : streams_) {
    if (s->parked)
      ended.push_back([f = std::move(s->parked)] { f(std::string()); });
    s->parked = nullptr;
    s->listed.reset();
  }
  streams_.clear();
  stream_index_ = {};
  ready_.clear();
  for (auto& [deadline, w] : waiters_)
    ended.push_back(std::move(w->done));
  waiters_.clear();
  waiters_by_index_.clear();
  waiter_index_ = {};
  counted();
  lock.unlock();
  for (auto& f : ended)
    f();
}

Result<std::shared_ptr<http::BodyStream>> WatchHub::watch(std::string prefix, raft::Index from,
                                                          WatchFormat format) {
  std::lock_guard lock(mu_);
  if (stopping_)
    return Status::unavailable("the node is stopping");
  if (watching() >= options_.max_watchers) {
    return Status::busy("this node already serves " + std::to_string(options_.max_watchers) +
                        " watches and blocking queries");
  }
  if (from != 0 && from <= base_) {
    return Status::compacted("the changes at index " + std::to_string(from) +
                             " are no longer kept on this node");
  }
  auto stream = std::make_shared<Stream>(weak_from_this(), std::move(prefix),
                                         from == 0 ? last_ + 1 : from, format);
  stream->listed = streams_.insert(streams_.end(), stream);
  stream_index_.add(stream->prefix, stream.get());
  counted();
  return std::shared_ptr<http::BodyStream>(stream);
}

Status WatchHub::wait(std::string prefix, bool exact, raft::Index index,
                      std::chrono::steady_clock::time_point deadline, std::function<void()> done) {
  std::unique_lock lock(mu_);
  if (watching() >= options_.max_watchers) {
    return Status::busy("this node already serves " + std::to_string(options_.max_watchers) +
                        " watches and blocking queries");
  }
  auto w = std::make_shared<Waiter>();
  w->prefix = std::move(prefix);
  w->exact = exact;
  w->index = index;
  w->deadline = deadline;
  w->done = std::move(done);
  bool now = stopping_ || index < base_;
  for (auto it = history_.rbegin(); !now && it != history_.rend() && it->event.index > index; ++it)
    now = matches(*w, it->event.key);
  if (!now) {
    w->by_deadline = waiters_.emplace(deadline, w);
    w->by_index = waiters_by_index_.emplace(index, w);
    waiter_index_.add(w->prefix, w);
    counted();
    started_waiting();
    return Status();
  }
  lock.unlock();
  w->done();
  return Status();
}

raft::Index WatchHub::compacted_index() const {
  std::lock_guard lock(mu_);
  return base_;
}

size_t WatchHub::watchers() const {
  std::lock_guard lock(mu_);
  return watching();
}

size_t WatchHub::watching() const {
  return streams_.size() + waiters_.size();
}

void WatchHub::started_waiting() {
  // The hub may be asleep with changes not taken in (nobody waited when they came), and a new
  // deadline may come before its next round.
  std::lock_guard queue_lock(queue_mu_);
  queue_.rethink = true;
  queue_cv_.notify_one();
}

void WatchHub::counted() {
  waiting_ = watching();
}

void WatchHub::drop(const std::shared_ptr<Waiter>& w) {
  waiter_index_.remove(w->prefix, w);
  waiters_by_index_.erase(w->by_index);
  waiters_.erase(w->by_deadline);  // may drop the last reference but the caller's
}

bool WatchHub::matches(const Waiter& w, const std::string& key) const {
  return w.exact ? key == w.prefix : std::string_view(key).starts_with(w.prefix);
}

void WatchHub::run() {
  auto next = Clock::now();
  for (;;) {
    Queue taken;
    {
      std::unique_lock queue_lock(queue_mu_);
      queue_cv_.wait_until(queue_lock, next, [&] {
        return queue_.stopping || queue_.restored_at || queue_.rethink ||
               (!queue_.events.empty() && waiting_.load() > 0);
      });
      if (queue_.stopping)
        return;
      taken.events.swap(queue_.events);
      taken.last = queue_.last;
      taken.restored_at = std::exchange(queue_.restored_at, std::nullopt);
      queue_.bytes = 0;
      queue_.rethink = false;
    }
    std::vector<std::function<void()>> woken;
    bool expiry_due = false;
    {
      std::lock_guard lock(mu_);
      take_incoming(std::move(taken), &woken);
      const auto at = Clock::now();
      while (!waiters_.empty() && waiters_.begin()->first <= at) {
        const std::shared_ptr<Waiter> w = waiters_.begin()->second;
        woken.push_back(std::move(w->done));
        drop(w);
      }
      wake_streams(at, &woken);
      counted();
      expiry_due = replica_ != nullptr && at >= next_expiry_check_;
      if (expiry_due)
        next_expiry_check_ = at + options_.expiry_interval;
      // Changes no one waits for are taken in within a tenth of a second; deadlines and expiry
      // keep their own pace.
      next = at + std::min<Clock::duration>(options_.progress_interval / 2, 100ms);
      if (replica_ != nullptr)
        next = std::min(next, next_expiry_check_);
      if (!waiters_.empty())
        next = std::min(next, waiters_.begin()->first);
    }
    for (auto& f : woken)
      f();
    if (expiry_due)
      expire_due();
  }
}

void WatchHub::take_incoming(Queue taken, std::vector<std::function<void()>>* woken) {
  if (taken.restored_at) {
    history_.clear();
    history_bytes_ = 0;
    base_ = last_ = *taken.restored_at;
    // Parked streams behind it lost changes no one knows now: they hear they are too slow.
    for (const auto& s : streams_) {
      if (s->cursor <= base_)
        mark_ready(*s, s->cursor);
    }
  }
  const size_t first_new = history_.size();
  for (fsm::KvEvent& e : taken.events) {
    const size_t bytes = change_bytes(e);
    history_bytes_ += bytes;
    history_.push_back(Change{std::move(e), bytes, {}});
  }
  last_ = std::max(last_, taken.last);
  // Those the new changes concern: blocking queries answer, parked streams get their piece.
  std::vector<std::shared_ptr<Waiter>> changed;
  for (size_t i = first_new; i < history_.size(); ++i) {
    const fsm::KvEvent& e = history_[i].event;
    waiter_index_.for_each_match(e.key, [&](const std::shared_ptr<Waiter>& w) {
      if (e.index > w->index && matches(*w, e.key))
        changed.push_back(w);
    });
    stream_index_.for_each_match(e.key, [&](Stream* s) { mark_ready(*s, e.index); });
  }
  for (const std::shared_ptr<Waiter>& w : changed) {
    if (w->done) {
      woken->push_back(std::exchange(w->done, nullptr));
      drop(w);
    }
  }
  // Then the history keeps within its bounds, one whole index at a time.
  while (!history_.empty() &&
         (history_.size() > options_.history_events || history_bytes_ > options_.history_bytes)) {
    const raft::Index dropped = history_.front().event.index;
    while (!history_.empty() && history_.front().event.index == dropped) {
      history_bytes_ -= history_.front().bytes;
      history_.pop_front();
    }
    base_ = dropped;
  }
  // Those whose index the history no longer reaches answer now, with what is there.
  while (!waiters_by_index_.empty() && waiters_by_index_.begin()->first < base_) {
    const std::shared_ptr<Waiter> w = waiters_by_index_.begin()->second;
    woken->push_back(std::exchange(w->done, nullptr));
    drop(w);
  }
}

void WatchHub::mark_ready(Stream& s, raft::Index from) {
  if (!s.parked || s.match_from != 0 || from < s.cursor || !s.listed)
    return;
  s.match_from = from;
  ready_.push_back(**s.listed);
}

void WatchHub::wake_streams(Clock::time_point now, std::vector<std::function<void()>>* woken) {
  for (const std::shared_ptr<Stream>& s : std::exchange(ready_, {})) {
    // The changes between its cursor and the first that concerns it concern it not.
    s->cursor = std::max(s->cursor, std::exchange(s->match_from, 0));
    wake(*s, now, woken);
  }
  if (now < next_sweep_)
    return;
  next_sweep_ = now + std::min<Clock::duration>(options_.progress_interval / 2, 100ms);
  for (auto it = streams_.begin(); it != streams_.end();) {
    Stream& s = **it++;  // first, as unlist() may erase it
    // Parked, with no change since that concerns it: nothing to look at up to here.
    if (s.parked)
      s.cursor = std::max(s.cursor, last_ + 1);
    wake(s, now, woken);
  }
}

void WatchHub::wake(Stream& s, Clock::time_point now, std::vector<std::function<void()>>* woken) {
  if (s.parked) {
    std::string piece = piece_for(s, now);
    if (!piece.empty()) {
      woken->push_back(
          [f = std::move(s.parked), piece = std::move(piece)]() mutable { f(std::move(piece)); });
      s.parked = nullptr;
    }
  }
  // One that ended hands the server its end when asked: the hub is done with it.
  if (s.ended && !s.parked)
    unlist(s);
}

void WatchHub::unlist(Stream& s) {
  if (!s.listed)
    return;
  const auto it = *s.listed;
  s.listed.reset();
  stream_index_.remove(s.prefix, &s);
  streams_.erase(it);  // may drop the last reference to `s`: not touched after this
  counted();
}

const std::string& WatchHub::line_of(Change& c) {
  if (c.line.empty()) {
    const fsm::KvEvent& e = c.event;
    json j{{"index", e.index}, {"type", type_name(e.type)}, {"key", e.key}};
    if (e.type == fsm::KvEvent::Type::kPut) {
      j["value"] = e.record.value;
      j["create_index"] = e.record.create_index;
      j["mod_index"] = e.record.mod_index;
      j["version"] = e.record.version;
      if (e.record.expires_at_ms != 0)
        j["expires_at"] = e.record.expires_at_ms;
    }
    if (e.prev_value)
      j["prev_value"] = *e.prev_value;
    c.line = dump(j);
  }
  return c.line;
}

std::string WatchHub::piece_for(Stream& s, Clock::time_point now) {
  if (s.cursor <= base_) {
    // The history moved on past what this watcher had read.
    s.ended = true;
    return notice(
        s.format, "error",
        json{{"error", "slow: the changes after index " + std::to_string(s.cursor - 1) +
                           " are no longer kept on this node; list again, or resume where they "
                           "are"},
             {"resume_from", s.cursor},
             {"compacted_index", base_}});
  }
  auto it =
      std::lower_bound(history_.begin(), history_.end(), s.cursor,
                       [](const Change& c, raft::Index index) { return c.event.index < index; });
  std::string out;
  std::string group;  // the matching changes at one index: sent whole or not at all
  raft::Index group_index = 0;
  const auto close_group = [&] {
    if (group.empty())
      return;
    if (s.format == WatchFormat::kEventStream)
      out += "id: " + std::to_string(group_index) + "\n" + group + "\n";
    else
      out += group;
    group.clear();
  };
  for (; it != history_.end(); ++it) {
    if (it->event.index != group_index) {
      close_group();
      if (out.size() >= options_.piece_bytes)
        break;
      group_index = it->event.index;
    }
    if (!std::string_view(it->event.key).starts_with(s.prefix))
      continue;
    if (s.format == WatchFormat::kEventStream)
      group += "data: " + line_of(*it) + "\n";
    else
      group += line_of(*it) + "\n";
  }
  close_group();
  // A watch from a later index than the node has reached keeps its place.
  s.cursor = it == history_.end() ? std::max(s.cursor, last_ + 1) : it->event.index;
  if (out.empty() && (!s.last_sent || now - *s.last_sent >= options_.progress_interval))
    out = notice(s.format, "progress", json{{"progress", last_}});
  if (!out.empty())
    s.last_sent = now;
  return out;
}

void WatchHub::expire_due() {
  Replica* replica = nullptr;
  {
    std::lock_guard lock(mu_);
    replica = replica_;
  }
  if (replica == nullptr || replica->replica_status().role != "leader")
    return;
  const std::vector<fsm::KvDue> due = store_->due(raftnginx::Clock::real()->wall_ms(), 1024);
  fsm::KvCommand cmd;
  std::vector<std::string> keys;
  const auto propose = [&] {
    if (cmd.success.empty())
      return;
    // A file of the gateways' (given a ttl by an older release) moves their revision too, so
    // that a write checked with it present is not committed after it (kv/gateway_files.h).
    if (touches_gateway(cmd))
      cmd.success.push_back(gateway_revision_bump());
    replica->propose(fsm::encode_kv_command(cmd), std::string(),
                     [hub = weak_from_this(), keys = std::move(keys)](Result<Outcome> r) {
                       if (!r.ok())
                         spdlog::debug("expiry not applied: {}", r.status().to_string());
                       if (auto h = hub.lock()) {
                         std::lock_guard lock(h->mu_);
                         for (const std::string& key : keys)
                           h->expiring_.erase(key);
                       }
                     });
    cmd.success.clear();
    keys.clear();
  };
  for (const fsm::KvDue& d : due) {
    {
      std::lock_guard lock(mu_);
      if (!expiring_.insert(d.key).second)
        continue;
    }
    cmd.success.push_back(fsm::KvOp{fsm::KvOp::Kind::kExpire, d.key, {}, d.mod_index});
    keys.push_back(d.key);
    if (cmd.success.size() == fsm::kMaxTxnOps)
      propose();
  }
  propose();
}

}  // namespace raftnginx::kv
