/* cmd_model.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe model: not implemented yet\n");
    return 1;
}
