"""The raft port's wire format (src/transport/frame.h, src/raft/encoding.cc) in Python, so that
tests can speak it as a hostile peer would: frames, hellos and raft messages, with any values."""
import struct

# Frame types.
HELLO, MESSAGE, SNAPSHOT_BEGIN, SNAPSHOT_CHUNK, SNAPSHOT_END, SNAPSHOT_ACK = range(1, 7)

# Message types (raft/types.h, in order).
(APPEND, APPEND_RESPONSE, HEARTBEAT, HEARTBEAT_RESPONSE, PRE_VOTE, PRE_VOTE_RESPONSE, VOTE,
 VOTE_RESPONSE, SNAPSHOT, TIMEOUT_NOW, READ_INDEX, READ_INDEX_RESPONSE, TRANSFER_LEADER) = range(13)


def node_id(name):
    """cluster::node_id_for: FNV-1a 64 of the name, never 0."""
    h = 14695981039346656037
    for b in name.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h or 1


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def blob(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def frame(kind, payload):
    return u32(1 + len(payload)) + bytes([kind]) + payload


def hello(cluster, sender, version=2):
    return frame(HELLO, b"RNGX" + bytes([version]) + blob(cluster) + u64(sender))


def entry(term, index, data=b"", kind=0):
    return u64(term) + u64(index) + bytes([kind]) + blob(data)


def message(kind, sender, to, term, index=0, log_term=0, commit=0, reject=False, hint=0,
            read_seq=0, context=b"", entries=(), snapshot=(0, 0, (), ())):
    snap_index, snap_term, voters, learners = snapshot
    out = bytes([1, kind]) + u64(sender) + u64(to) + u64(term) + u64(index) + u64(log_term)
    out += u64(commit) + bytes([1 if reject else 0]) + u64(hint) + u64(read_seq) + blob(context)
    out += u32(len(entries)) + b"".join(entries)
    out += u64(snap_index) + u64(snap_term)
    out += u32(len(voters)) + b"".join(u64(v) for v in voters)
    out += u32(len(learners)) + b"".join(u64(v) for v in learners)
    return frame(MESSAGE, out)


def set_command(pairs):
    """The node's envelope (version 2, no request id, time 0) around a KV set command."""
    body = bytes([1, 1]) + u32(len(pairs)) + b"".join(blob(k) + blob(v) for k, v in pairs)
    return bytes([2]) + blob(b"") + u64(0) + body
