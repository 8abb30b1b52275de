"""The untrusted side of the trust boundary: everything that runs inside the sandbox.

The zygote (`zygote`), the jail it builds (`jail`), the solution server (`server`), the
forbidden-op guards (`guards`) and the probes' bodies (`probes`) live here, with the wire
(`protocol`) that both sides speak. Nothing in this package imports from the judge side
of `grader` (a test enforces it): inside the sandbox only this package is visible, so a
solution process could not import the judge's code even if it tried.
"""
