# train.cmake: tests of the CPU trainer (tools/train/, target sr_train_core).
#   test_train_task   (unit)  task texts, corruptions, held-out split, which tokens a sample learns
#   test_train_grad   (unit)  analytic gradients vs finite differences on a tiny model, masking
#   test_train_model  (model) our GGUF in unmodified llama.cpp: tokenizer, chat template, logits
if(TARGET sr_train_core)
    sr_add_test(test_train_task SOURCES test_train_task.c NOLIB LABELS unit)
    target_link_libraries(test_train_task PRIVATE sr_train_core)

    sr_add_test(test_train_grad SOURCES test_train_grad.c NOLIB LABELS unit)
    target_link_libraries(test_train_grad PRIVATE sr_train_core)
    set_tests_properties(test_train_grad PROPERTIES TIMEOUT 60)

    file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/train)
    sr_add_test(test_train_model SOURCES test_train_model.c NOLIB LABELS model
                ARGS ${CMAKE_CURRENT_BINARY_DIR}/train)
    target_link_libraries(test_train_model PRIVATE sr_train_core)
    set_tests_properties(test_train_model PROPERTIES TIMEOUT 120)
endif()

# sr-train pair end to end on a tiny budget, and sr-train pad (see the script's header).
if(TARGET sr-train AND TARGET specreason-cli)
    add_test(NAME train_pair
        COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/train_pair.sh $<TARGET_FILE:sr-train> $<TARGET_FILE:specreason-cli>
                ${CMAKE_CURRENT_BINARY_DIR}/train_pair)
    set_tests_properties(train_pair PROPERTIES LABELS model TIMEOUT 300)
endif()

# Same settings, same bits: pair twice with the data-parallel judge phase (either side finishing
# first, one run beside a busy loop), train --threads 2 twice, --time-limit aborting and a failing
# worker (see the script's header). Five tiny pair runs: 600 s leaves room for a loaded machine.
if(TARGET sr-train)
    add_test(NAME train_determinism
        COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/train_determinism.sh $<TARGET_FILE:sr-train>
                ${CMAKE_CURRENT_BINARY_DIR}/train_determinism)
    set_tests_properties(train_determinism PROPERTIES LABELS model TIMEOUT 600)
endif()
