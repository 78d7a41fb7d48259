// qsr-run's command line: every flag it declares, with its default and help, and the recipe
// overrides it accepts. One table for the single-machine run, a node (--coordinator), and the
// launchers (--hostfile, Slurm), which pass many of these flags on.
#ifndef QSR_CLI_QSR_RUN_FLAGS_H_
#define QSR_CLI_QSR_RUN_FLAGS_H_

#include "common/flags.h"

namespace qsr {

// A parser with qsr-run's flags declared, ready for ParseForMain.
FlagParser QsrRunFlags();

}  // namespace qsr

#endif  // QSR_CLI_QSR_RUN_FLAGS_H_
