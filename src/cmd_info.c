/* cmd_info.c: placeholder until its issue lands. */
#include <stdio.h>

#include "lpe/cmd.h"

int lpe_cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lpe info: not implemented yet\n");
    return 1;
}
