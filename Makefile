# lpe build. `make` builds bin/lpe; `make test` builds and runs every test; `make help`.
#
# Optional features are probed and reported:
#   OpenMP  (-fopenmp)                        threads in the CPU backend
#   OpenBLAS (OpenMP build preferred)         sgemm for the CPU backend (required)
#   nvcc + kernels/*.cu                       the CUDA backend: CUDA=auto (default: built when nvcc
#                                             is found), CUDA=1 (required), CUDA=0 (never);
#                                             CUDA_ARCH=sm_90 gives sm_90 SASS plus compute_90 PTX
# Required: HDF5 C library, inih. tools/setup.sh installs everything on Debian.

CC       ?= cc
NVCC     ?= nvcc
CUDA     ?= auto
CUDA_ARCH ?= sm_90
# Portable by default: x86-64-v3 (AVX2, FMA: every x86-64 server CPU since 2013-2015), so a
# binary built on a login node runs on the compute nodes, and under valgrind (no AVX-512). It
# vectorises as -march=native does with GCC (256-bit): here results match a native build's bit
# for bit; x86-64-v2 (128-bit) changes float summation orders, and with them seeded statistical
# results (main's AMS test fails 3 checks at -8.9 se with its fixed seeds). Older CPUs:
# OPT='-O3 -march=x86-64-v2'. NATIVE=1: -march=native. OPT='...' replaces the flags altogether.
NATIVE   ?= 0
ifeq ($(NATIVE),1)
  OPT    ?= -O3 -march=native
else ifeq ($(shell uname -m),x86_64)
  OPT    ?= -O3 -march=x86-64-v3
else
  OPT    ?= -O3
endif
CFLAGS   ?=
BUILD    := build

# ---- probes -------------------------------------------------------------------------------
H := \#
HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
HDF5_LIBS   := $(shell pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
HAVE_HDF5   := $(shell printf '$(H)include <hdf5.h>\nint main(void){return 0;}' | $(CC) $(HDF5_CFLAGS) -x c - -o /dev/null $(HDF5_LIBS) 2>/dev/null && echo 1)
INIH_LIBS   := $(shell pkg-config --libs inih 2>/dev/null || echo -linih)
HAVE_INIH   := $(shell printf '$(H)include <ini.h>\nint main(void){return 0;}' | $(CC) -x c - -o /dev/null $(INIH_LIBS) 2>/dev/null && echo 1)
HAVE_OPENMP := $(shell printf 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1)
OPENBLAS_OMP_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifneq ($(wildcard $(OPENBLAS_OMP_DIR)/libopenblas.so),)
  BLAS_CFLAGS := -I/usr/include/x86_64-linux-gnu/openblas-openmp
  BLAS_LIBS   := -L$(OPENBLAS_OMP_DIR) -Wl,-rpath,$(OPENBLAS_OMP_DIR) -lopenblas
  BLAS_KIND   := OpenBLAS (OpenMP build)
else
  BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
  BLAS_KIND   := OpenBLAS
endif
HAVE_BLAS   := $(shell printf '$(H)include <cblas.h>\nint main(void){return 0;}' | $(CC) $(BLAS_CFLAGS) -x c - -o /dev/null $(BLAS_LIBS) 2>/dev/null && echo 1)

CU_SRCS := $(wildcard kernels/*.cu)
ifeq ($(CUDA),0)
  HAVE_CUDA :=
else
  HAVE_CUDA := $(if $(CU_SRCS),$(shell command -v $(NVCC) >/dev/null 2>&1 && echo 1),)
  ifeq ($(CUDA)$(HAVE_CUDA),1)
    $(error CUDA=1 but $(NVCC) is not on the PATH (or kernels/ is missing); use CUDA=auto or CUDA=0)
  endif
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))

# ---- flags --------------------------------------------------------------------------------
# the code's identity, recorded in every results file: `git describe` of the checkout (-dirty
# when it has uncommitted changes); a copy without git history says so
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown-not-a-git-checkout)
CPPFLAGS := -Iinclude $(HDF5_CFLAGS) $(BLAS_CFLAGS) -D_GNU_SOURCE
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fno-math-errno
LDLIBS   := $(HDF5_LIBS) $(INIH_LIBS) $(BLAS_LIBS) -lm -lpthread
ifeq ($(HAVE_OPENMP),1)
  CFLAGS += -fopenmp
  LDLIBS += -fopenmp
endif
ifeq ($(HAVE_CUDA),1)
  CPPFLAGS += -DLPE_HAVE_CUDA=1
  # sm_NN SASS for the target card plus compute_NN PTX, which newer cards JIT-compile
  CUDA_SM := $(patsubst sm_%,%,$(patsubst compute_%,%,$(CUDA_ARCH)))
  CUDA_GENCODE ?= -gencode arch=compute_$(CUDA_SM),code=[sm_$(CUDA_SM),compute_$(CUDA_SM)]
  NVCCFLAGS ?= -O3 -g -lineinfo $(CUDA_GENCODE) -std=c++20 -Iinclude -Xcompiler -Wall,-Wno-unused-parameter
  LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
endif

LIB_SRCS  := $(filter-out src/main.c,$(wildcard src/*.c src/*/*.c))
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(if $(HAVE_CUDA),$(CU_SRCS:%.cu=$(BUILD)/%.o),)
TEST_SRCS := $(wildcard tests/c/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/c/%.c=bin/tests/%)

.PHONY: all test test-c test-py clean help features quickstart bench FORCE
all: features bin/lpe

features:
	@echo "lpe $(VERSION): HDF5 $(if $(HAVE_HDF5),found,NOT FOUND) | inih $(if $(HAVE_INIH),found,NOT FOUND) | $(BLAS_KIND) $(if $(HAVE_BLAS),found,NOT FOUND) | OpenMP $(if $(HAVE_OPENMP),found,not found) | CUDA $(if $(HAVE_CUDA),found (arch $(CUDA_ARCH)),not built$(if $(CU_SRCS),, (no kernels yet)))"
	@test -n "$(HAVE_HDF5)" -a -n "$(HAVE_INIH)" -a -n "$(HAVE_BLAS)" || { echo "missing required libraries: run tools/setup.sh"; exit 2; }

# -MMD: each object also depends on the headers it includes (private ones in src/*/ too)
$(BUILD)/%.o: %.c Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

-include $(LIB_OBJS:.o=.d) $(BUILD)/src/main.d

$(BUILD)/%.o: %.cu $(wildcard include/lpe/*.h) $(wildcard kernels/*.cuh) Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

# version string: rebuilt whenever `git describe` changes
$(BUILD)/version.c: FORCE
	@mkdir -p $(BUILD)
	@echo 'const char *lpe_version(void) { return "$(VERSION)"; }' > $@.tmp
	@cmp -s $@.tmp $@ && rm $@.tmp || mv $@.tmp $@

$(BUILD)/liblpe.a: $(LIB_OBJS) $(BUILD)/version.o
	@rm -f $@
	ar rcs $@ $^

bin/lpe: $(BUILD)/src/main.o $(BUILD)/liblpe.a
	@mkdir -p bin
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bin/tests/%: tests/c/%.c tests/c/check.h $(BUILD)/liblpe.a
	@mkdir -p bin/tests $(BUILD)/tests
	$(CC) $(CPPFLAGS) -Itests/c $(CFLAGS) -MMD -MP -MF $(BUILD)/tests/$*.d $< $(BUILD)/liblpe.a -o $@ $(LDLIBS)

-include $(TEST_BINS:bin/tests/%=$(BUILD)/tests/%.d)

# every test: C unit tests, then the Python tests (which drive bin/lpe and read its HDF5 output)
test: all $(TEST_BINS)
	@tests/run_all.sh

test-c: all $(TEST_BINS)
	@tests/run_all.sh c

test-py: all $(TEST_BINS)
	@tests/run_all.sh py

bench: all
	bin/lpe bench

quickstart: all
	tools/quickstart.sh

clean:
	rm -rf $(BUILD) bin

help:
	@echo "make [CUDA=0|1|auto] [CUDA_ARCH=sm_90] [NATIVE=1] [OPT=...]   build bin/lpe (CUDA=auto: when nvcc is found)"
	@echo "   default -O3 -march=x86-64-v3 (portable, AVX2); NATIVE=1: -march=native for this CPU"
	@echo "make test | test-c | test-py                   run tests"
	@echo "make bench                                     CPU/GPU benchmark"
	@echo "make quickstart                                the embedded default experiment"
