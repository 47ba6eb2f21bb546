# Remote model backend (src/backend/remote.c) and llama.cpp RPC workers. The response readers
# get a unit test and a fuzz corpus replay (no server); the rest runs real processes on
# loopback: llama-server and ggml-rpc-server from the pinned llama.cpp build, and a fake
# OpenAI-compatible server (tests/fake_oai_server.py) for the faults.
set(SR_LLAMA_BIN ${llama_DIR}/../../../bin)
get_filename_component(SR_LLAMA_BIN ${SR_LLAMA_BIN} ABSOLUTE)
find_package(Python3 COMPONENTS Interpreter REQUIRED)

sr_add_test(test_remote_parse NOLIB LABELS unit
            SOURCES test_remote_parse.c ${CMAKE_SOURCE_DIR}/src/backend/remote_parse.c)
target_link_libraries(test_remote_parse PRIVATE PkgConfig::JANSSON)
sr_add_test(fuzz_replay_remote NOLIB LABELS fuzz
            SOURCES fuzz/replay_main.c fuzz/fuzz_remote.c ${CMAKE_SOURCE_DIR}/src/backend/remote_parse.c
            ARGS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus_remote)
target_link_libraries(fuzz_replay_remote PRIVATE PkgConfig::JANSSON)

# The judge against the in-process one on the same model; test_remote.py parity runs it against
# its llama-server (no test of its own).
add_executable(test_remote_judge test_remote_judge.c)
target_include_directories(test_remote_judge PRIVATE ${CMAKE_SOURCE_DIR}/include ${SR_SRC_INCLUDES}
                           ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(test_remote_judge PRIVATE specreason llama m)
sr_target_setup(test_remote_judge)

add_test(NAME test_remote_parity
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_remote.py parity
                 $<TARGET_FILE:specreason-cli> ${SR_LLAMA_BIN}/llama-server ${SR_MODEL_DIR}
                 $<TARGET_FILE:test_remote_judge>)
add_test(NAME test_remote_faults
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_remote.py faults
                 $<TARGET_FILE:specreason-cli> ${CMAKE_CURRENT_SOURCE_DIR}/fake_oai_server.py)
add_test(NAME test_rpc
         COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/test_remote.py rpc
                 $<TARGET_FILE:specreason-cli> ${SR_LLAMA_BIN}/ggml-rpc-server ${SR_MODEL_DIR})
set_tests_properties(test_remote_parity PROPERTIES LABELS model FIXTURES_REQUIRED models_sd TIMEOUT 1200
                     WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_remote_faults PROPERTIES LABELS unit TIMEOUT 600
                     WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(test_rpc PROPERTIES LABELS model FIXTURES_REQUIRED models_sd TIMEOUT 900
                     WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
