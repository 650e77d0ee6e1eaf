#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "raftnginx/env.h"

namespace raftnginx::storage {
namespace {

Status errno_status(const std::string& what, int err) {
  return Status::io_error(what + ": " + std::strerror(err));
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    if (fd_ >= 0)
      ::close(fd_);
  }

  Status append(std::string_view data) override {
    while (!data.empty()) {
      const ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return errno_status("write " + path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status();
  }

  Status sync() override {
    if (::fdatasync(fd_) != 0)
      return errno_status("fdatasync " + path_, errno);
    return Status();
  }

  Status close() override {
    if (fd_ < 0)
      return Status();
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0)
      return errno_status("close " + path_, errno);
    return Status();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixSequentialFile final : public SequentialFile {
 public:
  PosixSequentialFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixSequentialFile() override { ::close(fd_); }

  Status read(size_t n, std::string* out) override {
    out->resize(n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::read(fd_, out->data() + got, n - got);
      if (r < 0) {
        if (errno == EINTR)
          continue;
        return errno_status("read " + path_, errno);
      }
      if (r == 0)
        break;
      got += static_cast<size_t>(r);
    }
    out->resize(got);
    return Status();
  }

  Status skip(uint64_t n) override {
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0)
      return errno_status("seek " + path_, errno);
    return Status();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<SequentialFile>> open_for_read(const std::string& path) override {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT)
        return Status::not_found(path);
      return errno_status("open " + path, errno);
    }
    return std::unique_ptr<SequentialFile>(new PosixSequentialFile(path, fd));
  }

  Result<std::unique_ptr<WritableFile>> open_for_append(const std::string& path,
                                                        uint64_t* size) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
      return errno_status("open " + path, errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      return errno_status("stat " + path, err);
    }
    *size = static_cast<uint64_t>(st.st_size);
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Result<std::unique_ptr<WritableFile>> open_at(const std::string& path, uint64_t offset) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return errno_status("open " + path, errno);
    if (::lseek(fd, static_cast<off_t>(offset), SEEK_SET) < 0) {
      const int err = errno;
      ::close(fd);
      return errno_status("seek " + path, err);
    }
    return std::unique_ptr<WritableFile>(new PosixWritableFile(path, fd));
  }

  Status allocate(const std::string& path, uint64_t size) override {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
      return errno_status("open " + path, errno);
    // posix_fallocate writes zeros itself where the file system cannot reserve space.
    const int err = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    ::close(fd);
    if (err != 0)
      return errno_status("fallocate " + path, err);
    return Status();
  }

  Result<uint64_t> file_size(const std::string& path) override {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
      return errno_status("stat " + path, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<std::string> read_file(const std::string& path) override {
    auto file = open_for_read(path);
    if (!file.ok())
      return file.status();
    std::string out;
    if (struct stat st; ::stat(path.c_str(), &st) == 0)
      out.reserve(static_cast<size_t>(st.st_size));  // one allocation, no copies as it grows
    std::string piece;
    do {
      if (Status s = (*file)->read(1 << 16, &piece); !s.ok())
        return s;
      out += piece;
    } while (!piece.empty());
    return out;
  }

  Status write_file_atomically(const std::string& path, std::string_view data) override {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
      return errno_status("open " + tmp, errno);
    PosixWritableFile file(tmp, fd);
    if (Status s = file.append(data); !s.ok())
      return s;
    if (Status s = file.sync(); !s.ok())
      return s;
    if (Status s = file.close(); !s.ok())
      return s;
    if (Status s = rename(tmp, path); !s.ok())
      return s;
    return sync_dir(std::filesystem::path(path).parent_path().string());
  }

  Result<std::vector<std::string>> list_dir(const std::string& path) override {
    DIR* dir = ::opendir(path.c_str());
    if (!dir)
      return errno_status("opendir " + path, errno);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(dir)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..")
        names.push_back(name);
    }
    ::closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status create_dirs(const std::string& path) override {
    const std::filesystem::path target(path);
    if (path.empty() || std::filesystem::is_directory(target))
      return Status();
    const std::string parent = target.parent_path().string();
    if (Status s = create_dirs(parent); !s.ok())
      return s;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
      return errno_status("mkdir " + path, errno);
    // A new directory's entry is durable only once its parent is synced.
    return sync_dir(parent);
  }

  bool exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  Status remove_file(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return errno_status("unlink " + path, errno);
    return Status();
  }

  Status remove_all(const std::string& path) override {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
    if (ec)
      return Status::io_error("remove " + path + ": " + ec.message());
    return Status();
  }

  Status rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return errno_status("rename " + from + " to " + to, errno);
    return Status();
  }

  Status truncate(const std::string& path, uint64_t size) override {
    if (::truncate(path.c_str(), static_cast<off_t>(size)) != 0)
      return errno_status("truncate " + path, errno);
    return Status();
  }

  Status sync_dir(const std::string& path) override {
    const int fd = ::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      return errno_status("open dir " + path, errno);
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0)
      return errno_status("fsync dir " + path, err);
    return Status();
  }

  Result<uint64_t> free_bytes(const std::string& path) override {
    struct statvfs fs {};
    if (::statvfs(path.c_str(), &fs) != 0)
      return errno_status("statvfs " + path, errno);
    return uint64_t{fs.f_bavail} * fs.f_frsize;
  }
};

}  // namespace

Env* Env::posix() {
  static Env* const env = new PosixEnv();  // never destroyed, as Clock::real()
  return env;
}

}  // namespace raftnginx::storage
