# Engine tests: the loop against a scripted backend (unit), and against generated models (model).
# Besides the plain pair (fixture "models"), a "biased" pair whose output bias makes "\n\n" tokens
# and digits likely: steps then end at the delimiter (often inside a token such as ".\n\n") and
# the judge returns digits, so accept/reject sequences are mixed.
add_test(NAME models_biased_generate
    COMMAND ${CMAKE_COMMAND} -DGENMODEL=$<TARGET_FILE:sr-genmodel> -DVOCAB=${SR_VOCAB_GGUF}
            -DMODEL_DIR=${SR_MODEL_DIR}
            "-DSPECS=small-b|small|1|--bias-newlines 2 --bias-digits 5;base-b|base|2|--bias-newlines 2 --bias-digits 5"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/genmodels.cmake)
set_tests_properties(models_biased_generate PROPERTIES FIXTURES_SETUP models_biased LABELS model TIMEOUT 300)

sr_add_test(test_loop SOURCES test_loop.c LABELS unit)
sr_add_test(test_engine SOURCES test_engine.c LABELS model FIXTURES models
            ARGS ${SR_MODEL_DIR}/small.gguf ${SR_MODEL_DIR}/base.gguf plain)
add_test(NAME test_engine_biased COMMAND test_engine ${SR_MODEL_DIR}/small-b.gguf ${SR_MODEL_DIR}/base-b.gguf biased)
set_tests_properties(test_engine_biased PROPERTIES LABELS model FIXTURES_REQUIRED models_biased TIMEOUT 1200)

# Token-level speculative decoding: F32 models (batched and single-token decoding round alike),
# a Q8_0 copy of the base as a high-agreement draft, a padded vocabulary, a foreign tokenizer.
set(SR_VOCAB_GPT2 ${llama_DIR}/../../../share/ggml-vocab-gpt-2.gguf)
get_filename_component(SR_VOCAB_GPT2 ${SR_VOCAB_GPT2} ABSOLUTE)
add_test(NAME models_sd_generate
    COMMAND ${CMAKE_COMMAND} -DGENMODEL=$<TARGET_FILE:sr-genmodel> -DVOCAB=${SR_VOCAB_GGUF}
            -DMODEL_DIR=${SR_MODEL_DIR}
            "-DSPECS=small-f32|small|1|--f32 --bias-newlines 2 --bias-digits 5;base-f32|base|2|--f32 --bias-newlines 2 --bias-digits 5;base-q8|quantize|base-f32|q8_0;base-pad|base|2|--f32 --bias-newlines 2 --bias-digits 5 --pad-vocab 128;small-gpt2|small|3|--vocab ${SR_VOCAB_GPT2}"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/genmodels.cmake)
set_tests_properties(models_sd_generate PROPERTIES FIXTURES_SETUP models_sd LABELS model TIMEOUT 300)
sr_add_test(test_specdecode SOURCES test_specdecode.c LABELS model FIXTURES models_sd ARGS ${SR_MODEL_DIR})
# Fidelity and defects of the llama.cpp backend: small models whose vocabularies say add_bos_token
# true and false, and one with a 300-byte token; BOS, long tokens, special-token text in problems
# and steps, the judge's kept row, foreign draft models.
add_test(NAME models_bos_generate
    COMMAND ${CMAKE_COMMAND} -DGENMODEL=$<TARGET_FILE:sr-genmodel> -DVOCAB=${SR_VOCAB_GGUF}
            -DMODEL_DIR=${SR_MODEL_DIR}
            "-DSPECS=small-bos1|small|5|--add-bos true;small-bos0|small|5|--add-bos false;small-long|small|6|--pad-vocab 2 --long-token 300"
            -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/genmodels.cmake)
set_tests_properties(models_bos_generate PROPERTIES FIXTURES_SETUP models_bos LABELS model TIMEOUT 300)
add_test(NAME test_engine_fidelity COMMAND test_engine --fidelity ${SR_MODEL_DIR})
set_tests_properties(test_engine_fidelity PROPERTIES LABELS model FIXTURES_REQUIRED models_bos TIMEOUT 600)
# Batching across sessions: batched == alone, merged decodes, reset clears only its own sequence.
sr_add_test(test_batch SOURCES test_batch.c LABELS model FIXTURES models_sd ARGS ${SR_MODEL_DIR})
target_link_libraries(test_batch PRIVATE Threads::Threads)
# The same with two threads per decode: batched decodes through batch.c's one decode thread.
add_test(NAME test_batch_threads2 COMMAND test_batch ${SR_MODEL_DIR} 2)
set_tests_properties(test_batch_threads2 PROPERTIES LABELS model FIXTURES_REQUIRED models_sd TIMEOUT 1800)

# The cost-aware controller alone, on synthetic cost/acceptance/confidence sequences.
sr_add_test(test_controller SOURCES test_controller.c LABELS unit)
