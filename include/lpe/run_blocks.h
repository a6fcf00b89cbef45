/* run_blocks.h: a method run over a distribution's targets, block by block (run_blocks.c).
 *
 * Dimension legend: T = all targets of a distribution, TS = the run's (a shard's) share, G =
 *   targets per block (lpe_shard_block(T)).
 *
 * Why blocks: a method advances its targets together, rows of several targets sharing backend
 * calls, and a row's float32 results from sgemm depend in their last bits on the call's row count
 * and the row's place in it (measured with OpenBLAS 0.3.21 on this project's CPU; cuBLAS makes
 * no promise either). So that a target's estimate does not depend on which other targets a run
 * holds (a shard of `lpe run --shard` holds fewer), every sampling method runs once per block of
 * G consecutive targets of the full list: block b holds targets [b G, (b + 1) G). Shards are
 * whole blocks, so each block runs with the same targets, rows and calls in a shard as in the
 * unsharded run (tests/python/test_shard.py compares every dataset bit for bit). With G =
 * max(ceil(T / 16), min(T, 8)), the paper's 256 targets run as 16 blocks of 16: batches of
 * 16 x 32 MHIS walkers and 16 x 256 ITGIS samples per round, still large; runs of up to 8
 * targets are one block, as before blocks.
 * Exceptions: qld and gld draw one sample set shared by all targets and compute per-target
 * columns of float64 products (column results do not depend on the other columns): they run on
 * all of the run's targets at once; const (the mean true probability of the targets) is computed
 * over all T targets and its share taken.
 */
#ifndef LPE_RUN_BLOCKS_H
#define LPE_RUN_BLOCKS_H

#include "lpe/estimator.h"
#include "lpe/run_shard.h"

/* out [TS] for ctx->targets [TS], which are targets [p->first, p->first + TS) of p->total. */
void lpe_run_blocks(const lpe_estimator *est, lpe_est_out *out, const lpe_est_ctx *ctx,
                    const lpe_shard_part *p);

#endif
