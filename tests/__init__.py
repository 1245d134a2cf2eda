"""leadflow's tests, in folders by what they need (each folder's tests carry its marker):

- unit/: no server at all (rules, models, policy files, validation, the codec, links, MIME,
  keys, settings, the CLI's offline commands, fuzzing);
- workflows/: a Temporal server (time-skipping or dev) with a worker, no HTTP; the stored
  histories in workflows/histories/ replay here;
- service/: the API, pages and CLI on a stack, and the shared database on PostgreSQL;
- e2e/: a browser, chaos, faults injected into real processes, the benches' smoke runs, `make up`.

Helpers live in support/. `pytest -m unit` (or workflows, service, e2e) runs one kind;
`make check` runs unit and workflows, `make test` all of them."""
