"""Marketing's forms (forms/*.yaml beside the policies): each file's model and checks, the forms
loaded for the API, a submission read and judged, and double opt-in's signed confirmation."""
