// Flushes a written file (or a folder's entries) to the disk before it is renamed into place, so that
// after a power loss the real name never points at data the disk did not get (ext4/xfs may reorder a
// rename ahead of the data it names). A process kill needs no fsync: the page cache survives it.
#pragma once

#include <string>

namespace mlxgp {

// false when the path cannot be opened or synced (the caller decides whether that is fatal).
bool fsync_path(const std::string& path);

}  // namespace mlxgp
