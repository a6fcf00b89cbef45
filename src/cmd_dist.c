/* cmd_dist.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_dist(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe dist: not implemented yet\n");
    return 1;
}
