#pragma once
// Secret key files — the journal's HMAC key and the transport's pre-shared key
// (transport::Key::from_file, which then decodes hex): a regular file of at least `min_bytes`
// bytes that only its owner can read or write (mode 0600). The bytes are the key as they are
// (trailing whitespace ignored); generate one with
//   head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > run.key && chmod 600 run.key
//
//   std::string key = PEPITA_TRY(read_key_file("run.key", 32));

#include <cstddef>
#include <string>

#include "pepita/error.hpp"

namespace pepita {

/// Reads the key file at `path`. PermissionDenied when group or others may read or write it
/// (chmod 600 it); InvalidArgument when it is not a regular file, is shorter than `min_bytes`
/// or longer than 4 KiB; errno-based errors when it cannot be opened or read.
Result<std::string> read_key_file(const std::string& path, std::size_t min_bytes);

}  // namespace pepita
