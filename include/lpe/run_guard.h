/* run_guard.h: before any work, `lpe run` locks its output and checks it is not a directory, a
 * device or one of the experiment's inputs (src/run_guard.c, output_guard.h). */
#ifndef LPE_RUN_GUARD_H
#define LPE_RUN_GUARD_H

#include "lpe/config.h"

void lpe_run_guard(const lpe_config *c);

#endif
