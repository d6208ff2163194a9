#include "core/fsync.h"

#include <fcntl.h>
#include <unistd.h>

namespace mlxgp {

bool fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace mlxgp
