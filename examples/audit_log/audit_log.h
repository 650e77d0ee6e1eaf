// AuditLog: a custom state machine to copy when you plug in your own backend (main.cc serves it
// as audit-log-daemon).
//
// It appends every command, as a line "<index> <term> <command>", to a file: an append-only
// audit trail, where a command applied twice would show as a duplicate line. It is durable: the
// index of the last line is its applied index, so the line and the index are written together
// (the exactly-once contract in include/raftnginx/state_machine.h). A line cut short by a crash is
// dropped when the file is opened again, and the node re-sends that command.
//
// Snapshots: the state is the file's first N bytes, so a snapshot only remembers N (taken at
// once, on the apply thread) and copies that prefix later (on the snapshot thread) while new
// lines are appended.
//
// Replica checks (opting in): the state hash folds every line into a running hash, kept up to
// date as lines are appended; scrub() reads the file again and checks it still hashes so.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "raftnginx/state_machine.h"

namespace raftnginx::examples {

class AuditLog final : public fsm::StateMachine {
 public:
  // Opens (or creates) the audit file at `path`.
  static Result<std::unique_ptr<AuditLog>> open(storage::Env* env, std::string path);

  std::string name() const override { return "audit-log"; }
  Status apply(std::span<const fsm::Command> commands,
               std::vector<fsm::ApplyResult>* results) override;
  raft::Index applied_index() const override;
  raft::Term applied_term() const override;
  Result<std::unique_ptr<fsm::Snapshot>> snapshot() override;
  Status restore(storage::Env* env, const std::string& dir, raft::Index index,
                 raft::Term term) override;

  std::optional<uint64_t> state_hash() const override;
  Status scrub(Pace& pace) override;

  // The whole trail as of the last batch applied: "<index> <term> <command>" per line, in log
  // order. Safe from any thread.
  Result<std::string> contents() const;

 private:
  AuditLog(storage::Env* env, std::string path) : env_(env), path_(std::move(path)) {}
  Status load();

  storage::Env* env_;
  const std::string path_;
  mutable std::mutex mu_;
  std::unique_ptr<storage::WritableFile> file_;
  uint64_t size_ = 0;
  raft::Index applied_index_ = 0;
  raft::Term applied_term_ = 0;
  uint64_t hash_ = 0;  // of the lines in the file, in order
};

}  // namespace raftnginx::examples
