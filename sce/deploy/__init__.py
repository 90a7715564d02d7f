"""A trained run becomes a model folder that answers questions.

- export  adapter checkpoint -> PEFT adapter + merged model folders (`sce export`)
- infer   a model folder answers one clip or a manifest split (`sce infer`)
"""
