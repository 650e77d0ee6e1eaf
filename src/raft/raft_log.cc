#include "raft/raft_log.h"

#include <algorithm>

namespace raftnginx::raft {

RaftLog::RaftLog(const Storage& storage, Index committed, Index applied)
    : storage_(storage),
      unstable_(storage.last_index() + 1),
      committed_(committed),
      applied_(applied) {
  RAFTNGINX_CHECK(applied_ <= committed_ && committed_ <= last_index(),
                  "log opened with applied <= committed <= last index broken");
}

Index RaftLog::first_index() const {
  if (auto i = unstable_.maybe_first_index())
    return *i;
  return storage_.first_index();
}

Index RaftLog::last_index() const {
  if (auto i = unstable_.maybe_last_index())
    return *i;
  return storage_.last_index();
}

Index RaftLog::last_stable_index() const {
  if (unstable_.snapshot())
    return unstable_.snapshot()->index;
  return unstable_.offset() - 1;
}

Term RaftLog::last_term() const {
  auto t = term(last_index());
  RAFTNGINX_CHECK(t.ok(), "term of the last entry is unknown: " + t.status().to_string());
  return *t;
}

Result<Term> RaftLog::term(Index i) const {
  const Index dummy = first_index() - 1;
  if (i < dummy)
    return Status::compacted("entry " + std::to_string(i) + " compacted");
  if (i > last_index())
    return Status::unavailable("entry " + std::to_string(i) + " not yet");
  if (auto t = unstable_.maybe_term(i))
    return *t;
  return storage_.term(i);
}

bool RaftLog::match_term(Index i, Term t) const {
  auto got = term(i);
  return got.ok() && *got == t;
}

std::optional<Index> RaftLog::maybe_append(Index prev_index, Term prev_term, Index leader_commit,
                                           std::vector<Entry>&& entries) {
  if (!match_term(prev_index, prev_term))
    return std::nullopt;
  const Index last_new = prev_index + entries.size();
  const Index conflict = find_conflict(entries);
  if (conflict != 0) {
    RAFTNGINX_CHECK(conflict > committed_,
                    "a leader tried to overwrite committed entry " + std::to_string(conflict));
    entries.erase(entries.begin(),
                  entries.begin() + static_cast<std::ptrdiff_t>(conflict - prev_index - 1));
    unstable_.truncate_and_append(std::move(entries));
  }
  commit_to(std::min(leader_commit, last_new));
  return last_new;
}

Index RaftLog::append(std::vector<Entry>&& entries) {
  if (entries.empty())
    return last_index();
  RAFTNGINX_CHECK(entries.front().index == last_index() + 1, "append must follow the last entry");
  unstable_.truncate_and_append(std::move(entries));
  return last_index();
}

Index RaftLog::find_conflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!match_term(e.index, e.term))
      return e.index;
  }
  return 0;
}

std::pair<Index, Term> RaftLog::find_conflict_by_term(Index index, Term term) const {
  index = std::min(index, last_index());
  for (;; --index) {
    auto t = this->term(index);
    // Below what we still have, the answer is "somewhere before here": let the peer probe on.
    if (!t.ok())
      return {index, 0};
    if (*t <= term || index == 0)
      return {index, *t};
  }
}

Result<std::vector<Entry>> RaftLog::slice(Index lo, Index hi, uint64_t max_bytes) const {
  if (lo >= hi)
    return std::vector<Entry>{};
  if (lo < first_index())
    return Status::compacted("entry " + std::to_string(lo) + " compacted");
  if (hi > last_index() + 1) {
    return Status::unavailable("entry " + std::to_string(hi - 1) + " not yet");
  }
  std::vector<Entry> out;
  const Index split = unstable_.offset();
  if (lo < split) {
    auto stored = storage_.entries(lo, std::min(hi, split), max_bytes);
    if (!stored.ok())
      return stored.status();
    out = std::move(stored).value();
    // Storage stopped early on the size limit: the unstable part would not fit either.
    if (out.size() < std::min(hi, split) - lo)
      return out;
  }
  if (hi > split) {
    uint64_t used = 0;
    for (const Entry& e : out)
      used += entry_size(e);
    if (!out.empty() && used >= max_bytes)
      return out;
    auto rest =
        unstable_.slice(std::max(lo, split), hi, out.empty() ? max_bytes : max_bytes - used);
    if (!out.empty() && !rest.empty() && used + entry_size(rest.front()) > max_bytes)
      return out;
    out.insert(out.end(), std::make_move_iterator(rest.begin()),
               std::make_move_iterator(rest.end()));
  }
  return out;
}

bool RaftLog::is_up_to_date(Index index, Term term) const {
  const Term ours = last_term();
  return term > ours || (term == ours && index >= last_index());
}

void RaftLog::commit_to(Index i) {
  if (i <= committed_)
    return;
  RAFTNGINX_CHECK(i <= last_index(), "commit index " + std::to_string(i) +
                                         " is past the last entry " + std::to_string(last_index()));
  committed_ = i;
}

bool RaftLog::maybe_commit(Index i, Term term) {
  if (i <= committed_)
    return false;
  auto t = this->term(i);
#ifdef RAFTNGINX_FAULT_COMMIT_PRIOR_TERM
  // Deliberately broken (simulator self-test): commits entries of earlier terms by counting
  // replicas, the Figure 8 mistake.
  (void)term;
  if (!t.ok())
    return false;
#else
  if (!t.ok() || *t != term)
    return false;
#endif
  commit_to(i);
  return true;
}

void RaftLog::applied_to(Index i) {
  RAFTNGINX_CHECK(i >= applied_ && i <= committed_, "applied index out of order");
  applied_ = i;
}

bool RaftLog::has_next_committed_entries() const {
  return committed_ > applied_ && applied_ + 1 >= first_index();
}

std::vector<Entry> RaftLog::next_committed_entries(uint64_t max_bytes) const {
  if (!has_next_committed_entries())
    return {};
  auto got = slice(applied_ + 1, committed_ + 1, max_bytes);
  RAFTNGINX_CHECK(got.ok(), "committed entries unreadable: " + got.status().to_string());
  return std::move(got).value();
}

Result<SnapshotMeta> RaftLog::snapshot() const {
  if (unstable_.snapshot())
    return *unstable_.snapshot();
  return storage_.snapshot();
}

void RaftLog::restore(const SnapshotMeta& meta) {
  committed_ = meta.index;
  unstable_.restore(meta);
}

}  // namespace raftnginx::raft
