// StateMachine: the interface a backend implements to receive the committed log.
//
// The node hands every committed command to apply() exactly once, in log order, also across
// restarts, snapshots and elections. The contract that makes "exactly once" hold:
//
//   * A durable backend makes a batch's effects and the index of its last command durable
//     together (one transaction or write batch); applied_index() reports that index after a
//     restart, and the node never hands it a command at or below it.
//   * A volatile backend reports 0 from applied_index() when it starts; the node restores the
//     latest snapshot into it and replays the log after it.
//   * snapshot() captures a point-in-time view cheaply; the node writes it out on another
//     thread while apply() goes on. restore() replaces the whole state with a snapshot's,
//     including its applied index.
//
// Entries without a command (a new leader's no-op, membership changes) are not handed to the
// backend; the node keeps membership in its own metadata and in every snapshot. Neither is a
// retried request: the node answers it from its session table (node/session_table.h), so every
// backend gets exactly-once writes without doing anything. Snapshot file names beginning with
// "raftnginx." are the node's.
// apply() is called from one thread at a time; snapshot() from that same thread between batches;
// reads of a backend's own (get and the like) may come from other threads.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "raftnginx/env.h"
#include "raftnginx/pace.h"
#include "raftnginx/status.h"
#include "raftnginx/types.h"

namespace raftnginx::fsm {

struct Command {
  raft::Index index = 0;
  raft::Term term = 0;
  // When the leader proposed it (ms since the Unix epoch, its wall clock): the same on every
  // node, so a backend may use it for time-based effects (expiry) and stay deterministic.
  uint64_t time_ms = 0;
  std::string_view data;
};

// What a command produced, handed back to the client whose write it was. A command the backend
// refuses (malformed, unknown) gets an error here; the log still moves on.
struct ApplyResult {
  Status status;
  std::string value;

  bool operator==(const ApplyResult& other) const {
    return status.code() == other.status.code() && status.message() == other.status.message() &&
           value == other.value;
  }
};

// A point-in-time view of a state machine.
class Snapshot {
 public:
  virtual ~Snapshot() = default;
  // The last command whose effects the view contains.
  virtual raft::Index index() const = 0;
  virtual raft::Term term() const = 0;
  // Writes the view as files into `dir`, which exists and is empty. May run on another thread
  // while the state machine applies further commands.
  virtual Status write_to(storage::Env* env, const std::string& dir) = 0;
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;

  // A short name for logs and /status ("memory", "rocksdb", ...).
  virtual std::string name() const = 0;
  // Applies `commands` (consecutive in the log) and appends one result per command to
  // `results`. A non-ok return means the backend itself failed (an I/O error): the node stops
  // applying and reports it; nothing of the batch may then be durable.
  virtual Status apply(std::span<const Command> commands, std::vector<ApplyResult>* results) = 0;
  // The last index whose effects are durable (volatile backends: the last applied).
  virtual raft::Index applied_index() const = 0;
  virtual raft::Term applied_term() const = 0;
  virtual Result<std::unique_ptr<Snapshot>> snapshot() = 0;
  // Replaces the state with the snapshot files in `dir` (written by write_to on any node),
  // which cover the log up to (index, term).
  virtual Status restore(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) = 0;
  // Replaces the state with the snapshot files in `dir` taken at another point of some log (a
  // backup, restored in place by POST /restore) as the effect of the command at (index, term):
  // afterwards applied_index() is `index`. A durable backend makes that index durable only with
  // the new state, and reports 0 if it stopped halfway (the node then restores its latest
  // snapshot and replays the log, this command included). NotSupported (the default) changes
  // nothing, and the command is answered with the error on every node.
  virtual Status replace(storage::Env* env, const std::string& dir, raft::Index index,
                         raft::Term term) {
    (void)env, (void)dir, (void)index, (void)term;
    return Status::not_supported("the " + name() + " backend cannot replace its state in place");
  }

  // What makes a command the request it is, for a client's retry (node/session_table.h): a
  // retry with the same request id is answered with the first result if this is the same for
  // both, and refused (Conflict) if not. The default is the whole command; a backend whose
  // commands also carry what the node that made them read (the key-value store's guards)
  // leaves that out, so that a retry made on another node, or later, is still the same request.
  // Deterministic, and called on the apply thread.
  virtual std::string_view request_identity(std::string_view command) const { return command; }

  // Replica checks (opt in; the defaults take no part). state_hash(): a hash of the whole state
  // as of the last command applied, equal on every replica that applied the same commands, and
  // cheap (kept up to date as commands apply): the node reads it at checkpoints, on the apply
  // thread, and replicas compare. scrub(): re-reads everything stored, handing the bytes it read
  // to pace.consumed() (which keeps the rate; once it returns false, stop and reach no verdict),
  // and checks them against state_hash() and the backend's own checksums; Corruption names what
  // is damaged. Called from a thread of its own while apply goes on.
  // examples/audit_log shows how to opt in.
  virtual std::optional<uint64_t> state_hash() const { return std::nullopt; }
  virtual Status scrub(Pace& pace) {
    (void)pace;
    return Status();
  }
};

}  // namespace raftnginx::fsm
