# Tests for answer grading (src/eval/grade.c), the shared JSON helpers over jansson (src/core/jsonutil.c)
# and dataset loading
# (src/eval/dataset.c), plus replay of their fuzz seed corpora (label fuzz). Built from their sources
# (NOLIB), so they do not depend on the rest of the library.
set(SR_SRC ${CMAKE_SOURCE_DIR}/src)
set(SR_CORE ${SR_SRC}/core)
set(SR_EVAL ${SR_SRC}/eval)

sr_add_test(test_grade NOLIB SOURCES test_grade.c ${SR_EVAL}/grade.c ${SR_CORE}/jsonutil.c ${SR_CORE}/util.c)
target_link_libraries(test_grade PRIVATE PkgConfig::JANSSON)
sr_add_test(test_json NOLIB SOURCES test_json.c ${SR_CORE}/jsonutil.c ${SR_CORE}/util.c)
target_link_libraries(test_json PRIVATE PkgConfig::JANSSON)
# argv[1]: scratch directory for the GPQA files the test writes.
sr_add_test(test_dataset NOLIB SOURCES test_dataset.c ${SR_EVAL}/dataset.c ${SR_CORE}/jsonutil.c ${SR_CORE}/util.c
            ARGS ${CMAKE_CURRENT_BINARY_DIR})
target_link_libraries(test_dataset PRIVATE PkgConfig::JANSSON)

# The libFuzzer entry points with a plain main() that runs every file of a corpus directory.
sr_add_test(fuzz_replay_grade NOLIB LABELS fuzz
            SOURCES fuzz/replay_main.c fuzz/fuzz_grade.c ${SR_EVAL}/grade.c ${SR_CORE}/util.c
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_grade)
sr_add_test(fuzz_replay_json NOLIB LABELS fuzz
            SOURCES fuzz/replay_main.c fuzz/fuzz_json.c ${SR_CORE}/jsonutil.c ${SR_CORE}/util.c
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_json)
target_link_libraries(fuzz_replay_json PRIVATE PkgConfig::JANSSON)
