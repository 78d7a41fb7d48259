// WritePortFile: how a server binary (qsr-coordinator, qsr-agent) tells whoever started it which
// port it bound (--port-file), once it serves.
//
// The file is written under a temporary name beside `path` and renamed into place, so that a
// reader polling `path` sees either nothing or the whole port. Thread-compatible: two writers of
// the same path race on the temporary file.
#ifndef QSR_SERVING_PORT_FILE_H_
#define QSR_SERVING_PORT_FILE_H_

#include <string>

#include "absl/status/status.h"

namespace qsr {

// Writes `port` and a newline to `path` (replacing what was there). An empty `path` means no
// port file was asked for: OK, nothing written. Fails (UNAVAILABLE) when the file cannot be
// written or renamed into place, naming the path and the system's reason; the mains then exit 2.
absl::Status WritePortFile(const std::string& path, int port);

}  // namespace qsr

#endif  // QSR_SERVING_PORT_FILE_H_
