/* cmd_truth.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_truth(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe truth: not implemented yet\n");
    return 1;
}
