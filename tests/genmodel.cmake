# genmodel.cmake: tests of tools/genmodel.c (sr-genmodel) and the CTest fixture "models".
#
# This file has two roles:
#  - included by tests/CMakeLists.txt: declares the tests below;
#  - run as `cmake -DGENMODEL=... -DVOCAB=... -DMODEL_DIR=... -P genmodel.cmake`: the body of the
#    fixture test models_generate, which writes ${SR_MODEL_DIR}/small.gguf (--preset small --seed 1)
#    and ${SR_MODEL_DIR}/base.gguf (--preset base --seed 2). A model newer than the sr-genmodel
#    binary is kept, so reruns cost nothing. Other tests use FIXTURES models and these exact paths.

if(CMAKE_SCRIPT_MODE_FILE)
    foreach(v GENMODEL VOCAB MODEL_DIR)
        if(NOT DEFINED ${v})
            message(FATAL_ERROR "genmodel.cmake: -D${v}=... is required in script mode")
        endif()
    endforeach()
    file(MAKE_DIRECTORY "${MODEL_DIR}")
    foreach(spec small:1 base:2)
        string(REPLACE ":" ";" spec "${spec}")
        list(GET spec 0 preset)
        list(GET spec 1 seed)
        set(out "${MODEL_DIR}/${preset}.gguf")
        # IS_NEWER_THAN is also true when ${out} is missing or the timestamps are equal
        if(EXISTS "${out}" AND NOT "${GENMODEL}" IS_NEWER_THAN "${out}")
            message(STATUS "up to date: ${out}")
            continue()
        endif()
        execute_process(
            COMMAND "${GENMODEL}" --vocab "${VOCAB}" -o "${out}" --preset ${preset} --seed ${seed}
            RESULT_VARIABLE rc)
        if(NOT rc EQUAL 0)
            message(FATAL_ERROR "sr-genmodel failed for ${out} (${rc})")
        endif()
    endforeach()
    return()
endif()

add_test(NAME models_generate
    COMMAND ${CMAKE_COMMAND} -DGENMODEL=$<TARGET_FILE:sr-genmodel> -DVOCAB=${SR_VOCAB_GGUF}
            -DMODEL_DIR=${SR_MODEL_DIR} -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(models_generate PROPERTIES FIXTURES_SETUP models LABELS model TIMEOUT 300)

# Loads both models, checks the tokenizer, decoding, determinism of the generator and the biases.
sr_add_test(test_genmodel SOURCES test_genmodel.c NOLIB LABELS model FIXTURES models)
add_dependencies(test_genmodel sr-genmodel)

# Bad arguments and inputs: non-zero exit, a one-line error naming the problem, no file left behind.
add_test(NAME genmodel_bad_input
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/genmodel_bad_input.sh $<TARGET_FILE:sr-genmodel>
            ${SR_VOCAB_GGUF} ${CMAKE_CURRENT_BINARY_DIR}/genmodel_bad_input)
set_tests_properties(genmodel_bad_input PROPERTIES LABELS model TIMEOUT 120)
