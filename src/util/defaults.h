// The one table of defaults. Every option struct (NodeOptions, ServerOptions, DaemonOptions,
// TcpTransportOptions) starts from these values, and `raft-nginx --help` prints them from here.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

namespace raftnginx::defaults {

using namespace std::chrono_literals;

// Addresses.
inline constexpr std::string_view kHttpBind = "localhost:11000";
inline constexpr std::string_view kRaftBind = "localhost:12000";
inline constexpr std::string_view kClusterName = "raft-nginx";

// Consensus timing: the election timeout is randomized up to twice this; the heartbeat must be
// at most half of it.
inline constexpr std::chrono::milliseconds kElectionTimeout = 500ms;
inline constexpr std::chrono::milliseconds kHeartbeatTimeout = 50ms;
// A leader hands over to a preferred member only once it has led this many election timeouts,
// so that a preferred member that comes and goes does not make leadership flap.
inline constexpr int kPreferredLeaderHoldElections = 4;
// With --rtt: a heartbeat of about one round trip, an election timeout of about ten (etcd's
// tuning rule), never below the defaults above; and no round trip longer than this.
inline constexpr int kElectionRoundTrips = 10;
inline constexpr std::chrono::milliseconds kMaxRtt = 10s;

// Log and snapshots.
inline constexpr uint64_t kSnapshotThreshold = 8192;
inline constexpr std::chrono::milliseconds kSnapshotInterval = 2min;
inline constexpr uint64_t kSnapshotRetain = 2;
inline constexpr uint64_t kTrailingLogs = 10240;
inline constexpr uint64_t kSegmentBytes = 64 << 20;
// The rocksdb backend starts a flush after this many commands or this long (fsm/rocksdb_kv.h):
// the most a crash makes the node apply again.
inline constexpr uint64_t kFsmFlushEntries = 20000;
inline constexpr std::chrono::milliseconds kFsmFlushInterval = 2s;
// Integrity: how often the leader proposes a replica check, and how often, and how fast, each
// node re-reads everything it stores.
inline constexpr std::chrono::milliseconds kVerifyInterval = 60s;
// Under systemd (Type=notify), how often a starting daemon checks whether it is ready yet.
inline constexpr std::chrono::milliseconds kReadyPoll = 100ms;
inline constexpr std::chrono::milliseconds kScrubInterval = 1h;
inline constexpr uint64_t kScrubBytesPerSecond = 32 << 20;

// Client sessions (exactly-once writes): a request id is remembered for this many log entries,
// this long, and within this many bytes for all ids together, whichever ends first.
inline constexpr uint64_t kSessionWindowEntries = 100000;
inline constexpr std::chrono::milliseconds kSessionMaxAge = 1h;
inline constexpr uint64_t kSessionMaxBytes = 32 << 20;
inline constexpr size_t kMaxRequestIdBytes = 128;
// The paths the nginx gateway answers itself (nginx/conf.h): no backend's route may take them.
inline constexpr std::string_view kGatewayPaths = "/_raftnginx/";

// HTTP.
inline constexpr uint64_t kMaxBody = 4 << 20;
inline constexpr size_t kMaxConnections = 1024;
inline constexpr std::chrono::milliseconds kHttpReadTimeout = 10s;
// Longer than nginx's keepalive_timeout for upstreams (60 s), so that nginx closes an idle
// connection before the daemon does and never sends a request into a closing one.
inline constexpr std::chrono::milliseconds kHttpIdleTimeout = 75s;
inline constexpr int kHttpThreads = 2;
inline constexpr std::chrono::milliseconds kWriteTimeout = 5s;
// Backups: how many one node streams at once (each is a staged copy of the state on disk), and
// the largest one restored in place (one raft entry: well inside a frame, kMaxFrameBytes).
inline constexpr int kMaxConcurrentBackups = 2;
inline constexpr uint64_t kMaxReplacementBytes = 32 << 20;

// Transport between nodes.
inline constexpr uint64_t kMaxPeerQueueBytes = 64 << 20;
inline constexpr uint64_t kMaxFrameBytes = 64 << 20;
// What the frames being received on the raft port may hold together, whoever sends them.
inline constexpr uint64_t kMaxBufferedFrameBytes = 128 << 20;
// A snapshot chunk must cross the link within kRaftIoTimeout, and a broken stream resumes from
// the last whole chunk: 128 KiB keeps links down to about 13 KB/s moving.
inline constexpr uint64_t kSnapshotChunkBytes = 128 << 10;
// How long a receiver keeps what a broken snapshot stream staged, for the sender to resume.
inline constexpr std::chrono::milliseconds kKeepBrokenSnapshotStream = 10min;
inline constexpr size_t kMaxRaftConnections = 256;
// Open files: what the daemon keeps for itself whatever clients hold (cli/file_limits.h), what
// RocksDB may keep open, and the fewest HTTP connections worth starting with.
inline constexpr size_t kReservedFiles = 64;
inline constexpr size_t kRocksDbMaxOpenFiles = 256;
inline constexpr size_t kMinHttpConnections = 16;
inline constexpr size_t kMaxRaftConnectionsPerAddress = 32;
inline constexpr std::chrono::milliseconds kRaftIoTimeout = 10s;
inline constexpr std::chrono::milliseconds kRaftIdleTimeout = 60s;

// The key-value store's changes (kv/watch_hub.h): the recent changes kept for watches and
// blocking queries, by count and by bytes; how many watches and blocking queries may wait at
// once (each holds a connection: to the daemon, and two in the gateway's nginx, whose worker
// takes 1024; raise both limits together); how often an idle watch hears how far it is (at
// most kMaxWatchProgressInterval: nginx cuts a watch that is quiet for a minute); how long a
// blocking query may wait; how often the leader looks for keys past their deadline.
inline constexpr size_t kWatchHistoryEvents = 100000;
inline constexpr uint64_t kWatchHistoryBytes = 64 << 20;
inline constexpr size_t kMaxWatchers = 256;
inline constexpr std::chrono::milliseconds kWatchProgressInterval = 5s;
inline constexpr std::chrono::milliseconds kMaxWatchProgressInterval = 30s;
inline constexpr std::chrono::milliseconds kMaxBlockingWait = 5min;
inline constexpr std::chrono::milliseconds kExpiryInterval = 200ms;
// The most keys (and bytes of keys and values) one listing answers.
inline constexpr size_t kMaxListKeys = 100000;
inline constexpr uint64_t kMaxListBytes = 64 << 20;

// The gateway.
inline constexpr std::string_view kNginxBinary = "/usr/sbin/nginx";
// The gateways' files are rendered once they have been quiet this long, and at the latest this
// long after the first change (consul-template's min and max wait). The min is longer than the
// gap between a script's writes, each checked by the leader's nginx (tens of ms), and short
// enough that one change reaches every gateway within a second.
inline constexpr std::chrono::milliseconds kNginxWaitMin = 200ms;
inline constexpr std::chrono::milliseconds kNginxWaitMax = 10s;

inline constexpr std::string_view kLogLevel = "info";

}  // namespace raftnginx::defaults
