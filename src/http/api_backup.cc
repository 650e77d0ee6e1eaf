// Backups: GET /backup streams a point-in-time copy of the state machine (storage/backup.h);
// POST /restore replaces the cluster's state with one, through the log.
#include <spdlog/spdlog.h>

#include <chrono>

#include "http/api.h"
#include "http/api_json.h"
#include "storage/backup.h"

namespace raftnginx::http {
namespace {

constexpr size_t kBackupPieceBytes = 256 << 10;

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

// The backup of a staged view, read from its files piece by piece as the connection takes it.
// The pieces are small reads of files just written (in the page cache), made on the server's
// thread. The directory goes when the stream does, sent or not.
class BackupStream final : public BodyStream {
 public:
  BackupStream(storage::Env* env, std::string dir, storage::BackupHeader header,
               std::shared_ptr<void> slot)
      : env_(env), dir_(std::move(dir)), header_(std::move(header)), slot_(std::move(slot)) {}
  ~BackupStream() override { (void)env_->remove_all(dir_); }

  void next(std::function<void(std::string)> piece) override { piece(produce()); }
  void cancel() override {}

 private:
  std::string produce() {
    if (!header_sent_) {
      header_sent_ = true;
      return encoder_.header(header_);
    }
    while (file_ < header_.files.size()) {
      if (!reading_) {
        auto opened = env_->open_for_read(dir_ + "/" + header_.files[file_].name);
        if (!opened.ok())
          return fail(opened.status());
        reading_ = std::move(opened).value();
      }
      std::string bytes;
      if (Status s = reading_->read(kBackupPieceBytes, &bytes); !s.ok())
        return fail(s);
      if (!bytes.empty())
        return encoder_.body(bytes);
      reading_.reset();
      ++file_;
    }
    if (!finished_) {
      finished_ = true;
      return encoder_.finish();
    }
    return "";
  }
  // The body ends without its digest: the reader refuses it as cut short.
  std::string fail(const Status& s) {
    spdlog::error("backup: reading {} failed: {}", dir_, s.to_string());
    file_ = header_.files.size();
    finished_ = true;
    return "";
  }

  storage::Env* env_;
  const std::string dir_;
  const storage::BackupHeader header_;
  storage::BackupEncoder encoder_;
  bool header_sent_ = false;
  size_t file_ = 0;
  std::unique_ptr<storage::SequentialFile> reading_;
  bool finished_ = false;
  const std::shared_ptr<void> slot_;  // one of the node's concurrent backups
};

}  // namespace

void Api::backup(const CallPtr& call) {
  const std::string level = call->params.count("level") ? call->params.at("level") : "stale";
  if (level != "stale" && level != "linearizable")
    return call->answer(
        Response::error(400, "level must be stale or linearizable, not '" + level + "'"));
  // Each backup streaming is a staged copy of the state on disk: a few at a time.
  if (backups_streaming_->fetch_add(1) >= defaults::kMaxConcurrentBackups) {
    backups_streaming_->fetch_sub(1);
    return call->answer(Response::unavailable("this node is streaming " +
                                              std::to_string(defaults::kMaxConcurrentBackups) +
                                              " backups already; retry when one is done"));
  }
  // Held by whatever stands for the backup from now on: the stream, or this call's handlers.
  auto slot = std::shared_ptr<void>(
      nullptr, [streaming = backups_streaming_](void*) { streaming->fetch_sub(1); });
  auto stage = [this, call, slot] {
    node_->stage_view([this, call, slot](Result<node::Node::StagedView> staged) {
      if (!staged.ok())
        return fail(call, staged.status());
      storage::BackupHeader header{cluster_id(), staged->fsm_name,   staged->index, staged->term,
                                   now_ms(),     options_.self_name, staged->files};
      spdlog::info("backup of index {} for {}: writers waited {} µs for the view", staged->index,
                   call->principal ? call->principal->name : call->http_request.remote,
                   staged->stall.count());
      Response r;
      r.headers.emplace_back("Content-Type", "application/octet-stream");
      r.headers.emplace_back(
          "Content-Disposition",
          "attachment; filename=\"raft-nginx-" + std::to_string(staged->index) + ".backup\"");
      r.headers.emplace_back("X-Raft-Index", std::to_string(staged->index));
      r.headers.emplace_back("X-Backup-Stall-Us", std::to_string(staged->stall.count()));
      r.stream = std::make_shared<BackupStream>(node_->env(), staged->dir, std::move(header), slot);
      call->answer(std::move(r));
    });
  };
  if (level == "stale")
    return stage();
  deadline(call, Expiry::kNotDone, "the node could not be confirmed current in time");
  node_->read_barrier([this, call, stage](Status s) {
    if (!s.ok())
      return fail(call, s);
    // Current: writing the view out may take longer than a write would, and is not bounded by
    // the write timeout.
    stop_waiting(call.get());
    if (!call->done())
      stage();
  });
}

void Api::restore(const CallPtr& call) {
  if (node_->status().raft.role != raft::Role::kLeader)
    return not_leader(call);
  if (call->http_request.body.size() > defaults::kMaxReplacementBytes) {
    return call->answer(
        Response::error(413, "a backup restored in place travels as one raft entry: at most " +
                                 std::to_string(defaults::kMaxReplacementBytes >> 20) +
                                 " MiB; restore a larger one into a new cluster"));
  }
  auto backup = storage::decode_backup(call->http_request.body);
  if (!backup.ok())
    return call->answer(Response::error(400, backup.status().message()));
  if (backup->header.index >= node_->applied_index()) {
    return call->answer(Response::error(
        409, "the backup is of index " + std::to_string(backup->header.index) +
                 ", not before this cluster's " + std::to_string(node_->applied_index()) +
                 ": its revisions would run backwards; restore it into a new cluster"));
  }
  const std::string& fsm = node_->state_machine().name();
  if (backup->header.fsm_name != fsm)
    return call->answer(
        Response::error(400, "the backup holds the state of the \"" + backup->header.fsm_name +
                                 "\" backend, and this cluster runs \"" + fsm + "\""));
  const raft::Index from = backup->header.index;
  deadline(call, Expiry::kOutcomeUnknown,
           "the restore did not commit in time; it may still be applied");
  node_->propose_replacement(
      std::move(call->http_request.body), [this, call, from](Result<Outcome> r) {
        if (!r.ok())
          return fail(call, r.status());
        if (!r->result.status.ok())
          return call->answer(
              Response::error(r->result.status.code() == Status::Code::kNotSupported ? 501 : 400,
                              r->result.status.message()));
        spdlog::warn("POST /restore: the state of backup index {} replaced the cluster's at {}",
                     from, r->index);
        call->answer(with_raft_headers(
            Response::json(200, json{{"index", r->index}, {"backup_index", from}}), false));
      });
}

}  // namespace raftnginx::http
