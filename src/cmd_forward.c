/* cmd_forward.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_forward(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe forward: not implemented yet\n");
    return 1;
}
