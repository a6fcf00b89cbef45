/* cmd_run.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe run: not implemented yet\n");
    return 1;
}
