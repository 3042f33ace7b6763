"""The Baton console: server-rendered pages for analysts, auditors and reviewers, served by Baton itself."""
