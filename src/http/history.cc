#include "http/history.h"

#include <bit>
#include <nlohmann/json.hpp>

namespace raftnginx::http {
namespace {

using json = nlohmann::json;

}  // namespace

int64_t History::wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void History::Latencies::add(std::chrono::steady_clock::duration took) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(took).count();
  const size_t bucket =
      us <= 1 ? 0 : std::min<size_t>(buckets.size() - 1, std::bit_width(static_cast<uint64_t>(us)));
  ++buckets[bucket];
  ++count;
}

double History::Latencies::percentile_ms(double p) const {
  if (count == 0)
    return 0;
  const double wanted = p * static_cast<double>(count);
  double seen = 0;
  for (size_t i = 0; i < buckets.size(); ++i) {
    seen += buckets[i];
    if (seen >= wanted)
      return static_cast<double>(uint64_t{1} << i) / 1000.0;  // the bucket's upper bound
  }
  return static_cast<double>(uint64_t{1} << (buckets.size() - 1)) / 1000.0;
}

void History::roll(int64_t now_s) {
  // The same second, or the wall clock stepped back (NTP at boot): counted in the current one,
  // so that the seconds stay in order.
  if (now_s <= current_.t)
    return;
  if (current_.t != 0) {
    past_.push_back(current_);
    // The seconds nothing was answered in, up to this one (at most a window's worth).
    for (int64_t t = std::max(current_.t + 1, now_s - static_cast<int64_t>(kSeconds)); t < now_s;
         ++t)
      past_.push_back(Second{t, last_applied_, 0, {}, {}});
    while (past_.size() > kSeconds)
      past_.pop_front();
  }
  current_ = Second{now_s, last_applied_, 0, {}, {}};
}

void History::record(bool write, int status, std::chrono::steady_clock::duration took) {
  std::lock_guard lock(mu_);
  roll(now_ms_() / 1000);
  (write ? current_.writes : current_.reads).add(took);
  if (status >= 500)
    ++current_.errors;
}

void History::note_applied(raft::Index applied) {
  std::lock_guard lock(mu_);
  roll(now_ms_() / 1000);
  last_applied_ = applied;
  current_.applied = applied;
}

void History::add_event(Event e) {
  events_.push_back(std::move(e));
  while (events_.size() > kEvents)
    events_.pop_front();
}

void History::on_status(const node::NodeStatus& st) {
  std::set<std::string> members;
  for (raft::NodeId id : st.membership.conf.voters)
    members.insert(st.membership.name_of(id));
  for (raft::NodeId id : st.membership.conf.learners)
    members.insert(st.membership.name_of(id) + " (learner)");
  std::lock_guard lock(mu_);
  for (const auto& [id, member] : st.membership.members)
    names_[id] = member.name;
  const int64_t now = now_ms_();
  if (st.raft.leader != raft::kNoNode &&
      (st.raft.leader != leader_ || st.raft.hard_state.term != term_)) {
    leader_ = st.raft.leader;
    term_ = st.raft.hard_state.term;
    add_event(Event{now, "leader", term_, leader_, {}});
  }
  if (members != members_) {
    members_ = members;
    add_event(Event{now, "members", st.raft.hard_state.term, raft::kNoNode,
                    std::vector<std::string>(members.begin(), members.end())});
  }
}

json History::to_json() {
  // Copied under the lock, turned into JSON outside it: request answers wait on the lock.
  std::deque<Second> past;
  std::deque<Event> events;
  std::map<raft::NodeId, std::string> names;
  int64_t now = 0;
  {
    std::lock_guard lock(mu_);
    now = now_ms_();
    roll(now / 1000);
    past = past_;
    events = events_;
    names = names_;
  }
  json seconds = json::array();
  raft::Index before = 0;  // the applied index at the end of the second before
  for (const Second& s : past) {
    const uint64_t applied = before == 0 || s.applied < before ? 0 : s.applied - before;
    before = s.applied;
    seconds.push_back(json{{"t", s.t},
                           {"applied", applied},
                           {"reads", s.reads.count},
                           {"writes", s.writes.count},
                           {"errors", s.errors},
                           {"read_p50_ms", s.reads.percentile_ms(0.5)},
                           {"read_p99_ms", s.reads.percentile_ms(0.99)},
                           {"write_p50_ms", s.writes.percentile_ms(0.5)},
                           {"write_p99_ms", s.writes.percentile_ms(0.99)}});
  }
  json listed = json::array();
  for (const Event& e : events) {
    json j{{"t", e.t_ms}, {"kind", e.kind}, {"term", e.term}};
    if (e.kind == "leader") {
      auto name = names.find(e.leader);
      j["leader"] = name != names.end() ? name->second : std::to_string(e.leader);
    } else {
      j["members"] = e.members;
    }
    listed.push_back(std::move(j));
  }
  return json{{"now_ms", now}, {"seconds", seconds}, {"events", listed}};
}

}  // namespace raftnginx::http
