/* cmd.h: the subcommands of `lpe` (one file src/cmd_NAME.c each). Each takes the arguments after
 * its name (argv[0] is the subcommand) and returns the process exit code (0 ok, 1 run-time
 * failure, 2 bad usage or input). Each handles --help itself. */
#ifndef LPE_CMD_H
#define LPE_CMD_H

int lpe_cmd_run(int argc, char **argv);     /* run FILE.ini: an experiment */
int lpe_cmd_truth(int argc, char **argv);   /* ground truth: sampled (shards, resume) or exact */
int lpe_cmd_merge(int argc, char **argv);   /* merge OUT.h5 SHARD.h5...: shards of run --shard */
int lpe_cmd_forward(int argc, char **argv); /* one input: argmax, top logits, scores (JSON) */
int lpe_cmd_model(int argc, char **argv);   /* model init: random model of any shape */
int lpe_cmd_dist(int argc, char **argv);    /* dist random / show: distribution files */
int lpe_cmd_info(int argc, char **argv);    /* info FILE.h5: what a file holds */
int lpe_cmd_report(int argc, char **argv);  /* report RESULTS.h5...: tables */
int lpe_cmd_bench(int argc, char **argv);   /* bench: throughput beside this machine's sgemm */

#endif
