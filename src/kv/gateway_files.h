// The gateways' files in the key-value store: the keys under nginx/ (raftnginx/gateway.h), key
// "nginx/http/a.conf" being file "http/a.conf".
//
//   gateway_files_source(): Backend::gateway_files, over the store and its change hub.
//   GatewayWrites: a write that changes them is proposed only by the leader, only once its
//   nginx takes the files the write would make (else 422 with nginx's message), and one such
//   write at a time from check to outcome. Each is guarded (fsm::KvCommand::guards) by the
//   revision of the files it was checked against: kGatewayCheckedKey, rewritten by every
//   checked write. So two writes checked against the same files (by two leaders, one deposed)
//   cannot together make a set nobody checked: the later is refused at apply time (409).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <variant>

#include "fsm/kv_store.h"
#include "http/auth.h"
#include "kv/watch_hub.h"
#include "raftnginx/daemon.h"
#include "raftnginx/routes.h"

namespace raftnginx::kv {

using ExchangePtr = std::shared_ptr<Exchange>;

inline constexpr std::string_view kGatewayPrefix = http::kGatewayFiles;
// Not a file's name, so no client writes it: its mod_index is the revision of the files.
inline constexpr std::string_view kGatewayCheckedKey = "nginx/.checked";

// Whether applying `cmd` may change a key under nginx/.
bool touches_gateway(const fsm::KvCommand& cmd);

// The files as the store holds them now; keys whose names are not a file's are left out (and
// do not count against the limits). InvalidArgument if the files exceed nginx::kMaxGatewayFiles
// or kMaxGatewayBytes.
Result<GatewayFiles> read_gateway_files(const fsm::KvStore& kv);

// `cmd` as the leader proposes it once it has checked it against the files at revision
// `checked` (kGatewayCheckedKey's mod_index then, 0 if absent). The guard is not part of the
// request's identity (fsm::kv_request_identity): a retry checked later is the same request.
fsm::KvCommand guard_gateway_write(fsm::KvCommand cmd, raft::Index checked);

// The op that moves the files' revision: in every command that changes a file.
fsm::KvOp gateway_revision_bump();

// `kv` and `hub` outlive every call.
decltype(Backend::gateway_files) gateway_files_source(const fsm::KvStore* kv,
                                                      std::shared_ptr<WatchHub> hub);

class GatewayWrites : public std::enable_shared_from_this<GatewayWrites> {
 public:
  using Answer = std::function<http::Response(const Outcome&)>;

  // `check` null: every write to nginx/ is refused (503): nothing can check it on this node.
  GatewayWrites(const fsm::KvStore* kv, std::shared_ptr<const GatewayCheck> check);
  ~GatewayWrites();  // stop()
  // Answers the writes still waiting 503 and proposes no more: before the node stops (the
  // backend's attach(nullptr)), while their requests can still be answered.
  void stop();

  // Checks and proposes `cmd` (touches_gateway) through `ex`, on this object's thread; 503 if
  // too many already wait.
  void write(ExchangePtr ex, fsm::KvCommand cmd, Answer answer);

 private:
  struct Job {
    ExchangePtr ex;
    fsm::KvCommand cmd;
    Answer answer;
  };
  void run();
  // The command to propose for `job` (guarded), or the response that refuses it.
  std::variant<fsm::KvCommand, http::Response> prepare(const Job& job) const;
  void released();  // the write in flight has its outcome, or never will

  const fsm::KvStore* const kv_;
  const std::shared_ptr<const GatewayCheck> check_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool in_flight_ = false;  // a checked write is proposed and its outcome not known yet
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace raftnginx::kv
