"""leadflow: a company's lead lifecycle from policy files that sales and marketing write
together, run on Temporal (workflows/, activities/) and durable-rules (rules/). Everything
else that imports lives here: the API and pages, the CLI, the intake, delivery, the shared
database, the archive, governance, routing, identity, the codec, operations, replay."""
