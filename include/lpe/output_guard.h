/* output_guard.h: checks on a command's files before any work (src/output_guard.c).
 *
 *   - one writer per output: a lock file OUTPUT.lock beside it, held for the life of the process
 *     (flock; the lock dies with its process, and a lock file whose recorded process is gone is
 *     taken over), so a second `lpe run` or `lpe truth` on the same output is refused at once
 *     instead of sharing a checkpoint or renaming over the first one's results;
 *   - an output is never a directory, a device or one of the command's own inputs (compared by
 *     device and inode, so other spellings and links of the same file are caught), --force or not;
 *   - an input is a regular file (not /dev/zero, a FIFO or a directory).
 */
#ifndef LPE_OUTPUT_GUARD_H
#define LPE_OUTPUT_GUARD_H

#include <stddef.h>

/* Take OUTPUT.lock, then check `output` against `inputs` (n of them, NULL entries skipped).
 * Exit 1 when another live process holds the lock; exit 2 for a bad output. */
void lpe_output_guard(const char *output, const char *const *inputs, int n);

/* The lock alone (exit 1 naming the holder's pid when held). Idempotent for one path. */
void lpe_output_lock(const char *output);

/* Create the directories above path (mkdir -p of its dirname); exit 2 when one cannot be. */
void lpe_output_make_parents(const char *path);

/* An existing output must be a regular file (exit 2 otherwise); used by every writer. */
void lpe_output_check_kind(const char *output);

/* An experiment (INI) file larger than this is refused: 16 MiB. */
#define LPE_INI_MAX_BYTES (16 << 20)

/* `what` file `path` must be a regular file of at most max_bytes (0: any size); exit 2. */
void lpe_input_check(const char *path, const char *what, long long max_bytes);

#endif
