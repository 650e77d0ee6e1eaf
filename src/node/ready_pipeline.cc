#include "node/ready_pipeline.h"

namespace raftnginx::node {

Result<ReadyPipeline::InFlight> ReadyPipeline::begin(raft::Ready rd) {
  InFlight f;
  if (rd.snapshot) {
    if (Status s = sink_->install_snapshot(*rd.snapshot); !s.ok())
      return s;
  }
  std::vector<raft::Message> early;
  for (raft::Message& m : rd.messages) {
    if (m.type == raft::MessageType::kSnapshot) {
      sink_->send_snapshot(std::move(m));
    } else if (raft::may_send_before_durable(rd, m, sink_->stored_hard_state())) {
      early.push_back(std::move(m));
    } else {
      f.after_save.push_back(std::move(m));
    }
  }
  rd.messages.clear();
  f.sent_early = early.size();
  if (!early.empty())
    sink_->send(std::move(early));
  if (rd.must_sync && core_->role() == raft::Role::kLeader) {
    raft::Index durable = sink_->stored_last_index();
    if (!rd.entries.empty())
      durable = std::min(durable, rd.entries.front().index - 1);
    const std::vector<raft::Entry>& committed = rd.committed_entries;
    while (f.applied_early < committed.size() && committed[f.applied_early].index <= durable)
      ++f.applied_early;
    if (Status s = sink_->apply(std::span(committed).first(f.applied_early)); !s.ok())
      return s;
  }
  f.ready = std::move(rd);
  return f;
}

Status ReadyPipeline::finish(InFlight& f) {
  raft::Ready& rd = f.ready;
  const Clock::time_point start = clock_->now();
  if (Status s = sink_->save(rd.entries, rd.hard_state, rd.must_sync); !s.ok())
    return s;
  if (rd.must_sync && sync_latency_ != nullptr)
    sync_latency_->record(clock_->now() - start);
  if (!f.after_save.empty())
    sink_->send(std::move(f.after_save));
  const std::span<const raft::Entry> committed(rd.committed_entries);
  if (Status s = sink_->apply(committed.subspan(f.applied_early)); !s.ok())
    return s;
  if (!rd.read_states.empty())
    sink_->read_states(std::move(rd.read_states));
  core_->advance();
  return Status();
}

Status ReadyPipeline::run(raft::Ready rd) {
  auto in_flight = begin(std::move(rd));
  if (!in_flight.ok())
    return in_flight.status();
  return finish(in_flight.value());
}

}  // namespace raftnginx::node
