#!/bin/sh
# Variables arrive as REGENTE_VAR_<NAME> (text) and in the JSON file $REGENTE_VARIABLES.
set -eu
times="$REGENTE_VAR_TIMES"
pause="$REGENTE_VAR_PAUSE"
i=1
while [ "$i" -le "$times" ]; do
  echo "hello, $REGENTE_VAR_NAME ($i of $times)"
  echo "::progress::$((i * 100 / times))"
  if [ "$pause" != 0 ]; then
    sleep "$pause"
  fi
  i=$((i + 1))
done
if [ "$times" -gt 5 ]; then
  echo "::warning::that was a lot of greetings"
fi
printf '::return::{"greeted": "%s", "times": %s}\n' "$REGENTE_VAR_NAME" "$times"
