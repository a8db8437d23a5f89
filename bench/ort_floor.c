/* onnxruntime's own cost of one run, with no Python in the way: a graph's single input and output bound
 * once (OrtIoBinding over caller-owned buffers), then OrtApi::RunWithBinding timed in a loop. This is the
 * floor that any onnxruntime binding (Python's included) adds its call to.
 *
 * It loads the libonnxruntime.so that the onnxruntime wheel ships beside its Python module and reaches the
 * C API through OrtGetApiBase, so it needs no headers: the entries it calls are given by their position
 * in the OrtApi table, which onnxruntime keeps append-only across versions (its ABI promise).
 *
 *   gcc -O2 bench/ort_floor.c -o build/ort_floor -ldl
 *   build/ort_floor LIB MODEL INPUT_NAME 1x8 OUTPUT_NAME 1x1x8x8 [REPS] [ROUNDS]
 *
 * Prints the median and minimum over ROUNDS rounds of REPS runs, in microseconds per run, one thread,
 * pool threads not spinning (the runtime's session options). bench/ort_floor.py drives it.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void *Ptr;

/* Positions in OrtApi (see the comment at the top). */
enum {
    GET_ERROR_MESSAGE = 2, CREATE_ENV = 3, CREATE_SESSION_FROM_ARRAY = 8, CREATE_SESSION_OPTIONS = 10,
    SET_INTRA_OP_THREADS = 24, SET_INTER_OP_THREADS = 25, CREATE_RUN_OPTIONS = 39, CREATE_TENSOR_WITH_DATA = 49,
    CREATE_CPU_MEMORY_INFO = 69, ADD_SESSION_CONFIG_ENTRY = 130, RUN_WITH_BINDING = 133, CREATE_IO_BINDING = 134,
    BIND_INPUT = 136, BIND_OUTPUT = 137, ADD_RUN_CONFIG_ENTRY = 165,
};
enum { API_VERSION = 16, FLOAT_TENSOR = 1, ARENA_ALLOCATOR = 1, DEFAULT_MEMORY = 0, LOG_ERROR = 3, MAX_DIMS = 8 };

static Ptr *api;

static void check(Ptr status, const char *what) {
    if (status) {
        fprintf(stderr, "Error: %s: %s\n", what, ((const char *(*)(Ptr))api[GET_ERROR_MESSAGE])(status));
        exit(1);
    }
}

/* "1x1x8x8" -> dims, *rank; returns the element count */
static size_t parse_dims(const char *text, int64_t *dims, size_t *rank) {
    size_t n = 0, count = 1;
    for (const char *p = text; *p && n < MAX_DIMS; n++) {
        char *end;
        dims[n] = strtoll(p, &end, 10);
        if (end == p || dims[n] <= 0) {
            fprintf(stderr, "Error: dims %s: expected sizes joined by x, e.g. 1x8\n", text);
            exit(2);
        }
        count *= (size_t)dims[n];
        p = *end == 'x' ? end + 1 : end;
        if (*end && *end != 'x') { fprintf(stderr, "Error: dims %s: expected sizes joined by x\n", text); exit(2); }
    }
    *rank = n;
    return count;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "Error: usage: %s LIB MODEL INPUT_NAME DIMS OUTPUT_NAME DIMS [REPS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    long reps = argc > 7 ? atol(argv[7]) : 20000, rounds = argc > 8 ? atol(argv[8]) : 31;
    if (reps <= 0 || rounds <= 0 || rounds > 1000) { fprintf(stderr, "Error: REPS and ROUNDS must be positive (ROUNDS <= 1000)\n"); return 2; }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "Error: %s\n", dlerror()); return 2; }
    Ptr *(*get_base)(void) = (Ptr *(*)(void))dlsym(lib, "OrtGetApiBase");
    if (!get_base) { fprintf(stderr, "Error: %s has no OrtGetApiBase\n", argv[1]); return 2; }
    api = ((Ptr *(*)(uint32_t))get_base()[0])(API_VERSION);
    if (!api) { fprintf(stderr, "Error: %s does not offer C API version %d\n", argv[1], API_VERSION); return 2; }

    FILE *f = fopen(argv[2], "rb");
    if (!f) { fprintf(stderr, "Error: cannot open %s\n", argv[2]); return 2; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *model = malloc(size);
    if (fread(model, 1, size, f) != (size_t)size) { fprintf(stderr, "Error: cannot read %s\n", argv[2]); return 2; }
    fclose(f);

    int64_t in_dims[MAX_DIMS], out_dims[MAX_DIMS];
    size_t in_rank, out_rank;
    size_t in_count = parse_dims(argv[4], in_dims, &in_rank), out_count = parse_dims(argv[6], out_dims, &out_rank);

    Ptr env, options, session, memory, input, output, binding, run_options;
    check(((Ptr(*)(int, const char *, Ptr *))api[CREATE_ENV])(LOG_ERROR, "ort_floor", &env), "CreateEnv");
    check(((Ptr(*)(Ptr *))api[CREATE_SESSION_OPTIONS])(&options), "CreateSessionOptions");
    check(((Ptr(*)(Ptr, int))api[SET_INTRA_OP_THREADS])(options, 1), "SetIntraOpNumThreads");
    check(((Ptr(*)(Ptr, int))api[SET_INTER_OP_THREADS])(options, 1), "SetInterOpNumThreads");
    check(((Ptr(*)(Ptr, const char *, const char *))api[ADD_SESSION_CONFIG_ENTRY])(options, "session.intra_op.allow_spinning", "0"), "AddSessionConfigEntry");
    check(((Ptr(*)(Ptr, const void *, size_t, Ptr, Ptr *))api[CREATE_SESSION_FROM_ARRAY])(env, model, size, options, &session), "CreateSessionFromArray");
    check(((Ptr(*)(int, int, Ptr *))api[CREATE_CPU_MEMORY_INFO])(ARENA_ALLOCATOR, DEFAULT_MEMORY, &memory), "CreateCpuMemoryInfo");
    float *x = malloc(in_count * sizeof(float)), *y = malloc(out_count * sizeof(float));
    for (size_t i = 0; i < in_count; i++) x[i] = 0.01f * (float)(i % 17);  /* any finite input */
    typedef Ptr (*CreateTensor)(Ptr, Ptr, size_t, const int64_t *, size_t, int, Ptr *);
    check(((CreateTensor)api[CREATE_TENSOR_WITH_DATA])(memory, x, in_count * sizeof(float), in_dims, in_rank, FLOAT_TENSOR, &input), "CreateTensorWithDataAsOrtValue");
    check(((CreateTensor)api[CREATE_TENSOR_WITH_DATA])(memory, y, out_count * sizeof(float), out_dims, out_rank, FLOAT_TENSOR, &output), "CreateTensorWithDataAsOrtValue");
    check(((Ptr(*)(Ptr, Ptr *))api[CREATE_IO_BINDING])(session, &binding), "CreateIoBinding");
    check(((Ptr(*)(Ptr, const char *, Ptr))api[BIND_INPUT])(binding, argv[3], input), "BindInput");
    check(((Ptr(*)(Ptr, const char *, Ptr))api[BIND_OUTPUT])(binding, argv[5], output), "BindOutput");
    check(((Ptr(*)(Ptr *))api[CREATE_RUN_OPTIONS])(&run_options), "CreateRunOptions");
    /* as the Python runtime does: without it, each bound run throws and catches an exception inside */
    check(((Ptr(*)(Ptr, const char *, const char *))api[ADD_RUN_CONFIG_ENTRY])(run_options, "gpu_graph_id", "0"), "AddRunConfigEntry");

    Ptr (*run)(Ptr, Ptr, Ptr) = (Ptr(*)(Ptr, Ptr, Ptr))api[RUN_WITH_BINDING];
    double *per_run = malloc(rounds * sizeof(double));
    for (long r = 0; r < rounds; r++) {
        for (long i = 0; i < reps / 20 + 1; i++) check(run(session, run_options, binding), "RunWithBinding");
        double start = now_us();
        for (long i = 0; i < reps; i++) check(run(session, run_options, binding), "RunWithBinding");
        per_run[r] = (now_us() - start) / reps;
    }
    qsort(per_run, rounds, sizeof(double), by_value);
    printf("{\"median_us\": %.4f, \"min_us\": %.4f, \"rounds\": %ld, \"reps\": %ld, \"first_output\": %.9g}\n", per_run[rounds / 2], per_run[0], rounds, reps, y[0]);
    return 0;
}
