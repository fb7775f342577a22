"""The one base of the harness's expected errors: bad input or an environment that cannot run the job, said in
one line naming the file, key or folder (exit code 2 from every entry point, data_prep/runtime/cli.py), never a
traceback. Anything else is a bug and keeps its traceback."""


class HarnessError(Exception):
    pass
