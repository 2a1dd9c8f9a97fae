#!/bin/sh
# azd postdeploy hook (POSIX sh): subscribe the blob trigger to BlobCreated events on the
# input container, then ask the app's /api/health whether it can reach its storage.
#
# azd runs this after the code is deployed, with main.bicep's outputs in the environment.
# The subscription is made here and not in main.bicep because its webhook needs the
# function's blobs_extension system key, which the host creates only when it has
# indexed the deployed blob trigger. The key itself is read by ARM inside
# events/blob-created.bicep and never passes through this script.
set -eu

: "${AZURE_RESOURCE_GROUP:?not set: run this through azd (azd up or azd deploy)}"
: "${AZURE_FUNCTION_APP_NAME:?not set: run azd provision first}"
: "${EVENT_GRID_SYSTEM_TOPIC_NAME:?not set: run azd provision first}"
: "${AZURE_STORAGE_ACCOUNT_NAME:?not set: run azd provision first}"
: "${INPUT_CONTAINER:?not set: run azd provision first}"
: "${DEAD_LETTER_CONTAINER:?not set: run azd provision first}"
: "${BLOB_TRIGGER_FUNCTION:?not set: run azd provision first}"
: "${HEALTH_URL:?not set: run azd provision first}"

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
attempts=${POSTDEPLOY_ATTEMPTS:-30}
pause=${POSTDEPLOY_PAUSE_SECONDS:-10}

say() { printf 'postdeploy: %s\n' "$*"; }
fail() { printf 'postdeploy: %s\n' "$*" >&2; exit 1; }

command -v az >/dev/null 2>&1 || fail "the Azure CLI (az) is needed to create the Event Grid subscription; install it, run az login, then azd deploy"
command -v curl >/dev/null 2>&1 || fail "curl is needed to call $HEALTH_URL"
if [ -n "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  az account set --subscription "$AZURE_SUBSCRIPTION_ID" || fail "az is not signed in to subscription $AZURE_SUBSCRIPTION_ID: run az login"
fi

# The host creates the key a little after the deployment; wait for it, never print it.
say "waiting for the blob extension's system key on $AZURE_FUNCTION_APP_NAME"
n=0
until az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
        --query "systemKeys.blobs_extension" --output tsv 2>/dev/null | grep -q .; do
  n=$((n + 1))
  [ "$n" -lt "$attempts" ] || fail "no blobs_extension key after $attempts tries: is $BLOB_TRIGGER_FUNCTION deployed? (az functionapp function list)"
  sleep "$pause"
done

say "subscribing $BLOB_TRIGGER_FUNCTION to BlobCreated in container $INPUT_CONTAINER"
az deployment group create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --name blob-created \
  --template-file "$here/../events/blob-created.bicep" \
  --parameters \
    functionAppName="$AZURE_FUNCTION_APP_NAME" \
    systemTopicName="$EVENT_GRID_SYSTEM_TOPIC_NAME" \
    dataStorageAccountName="$AZURE_STORAGE_ACCOUNT_NAME" \
    inputContainerName="$INPUT_CONTAINER" \
    deadLetterContainerName="$DEAD_LETTER_CONTAINER" \
    functionName="$BLOB_TRIGGER_FUNCTION" \
  --output none

# 200 once storage answers and every container exists; 503 names what is missing.
say "checking $HEALTH_URL"
n=0
while :; do
  if body=$(curl --silent --show-error --fail-with-body --max-time 30 "$HEALTH_URL" 2>&1); then
    say "healthy: $body"
    exit 0
  fi
  n=$((n + 1))
  [ "$n" -lt "$attempts" ] || fail "not healthy after $attempts tries: $body"
  sleep "$pause"
done
