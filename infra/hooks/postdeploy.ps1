# azd postdeploy hook (PowerShell): the same steps as postdeploy.sh, for Windows.
# Subscribe the blob trigger to BlobCreated events on the input container, then ask
# the app's /api/health whether it can reach its storage. The blobs_extension key is
# read by ARM inside events/blob-created.bicep and never passes through this script.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Fail([string]$message) {
    Write-Error "postdeploy: $message"
    exit 1
}

$required = 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'EVENT_GRID_SYSTEM_TOPIC_NAME',
    'AZURE_STORAGE_ACCOUNT_NAME', 'INPUT_CONTAINER', 'DEAD_LETTER_CONTAINER', 'BLOB_TRIGGER_FUNCTION', 'HEALTH_URL'
foreach ($name in $required) {
    if (-not [Environment]::GetEnvironmentVariable($name)) { Fail "$name is not set: run this through azd (azd up)" }
}
$attempts = if ($env:POSTDEPLOY_ATTEMPTS) { [int]$env:POSTDEPLOY_ATTEMPTS } else { 30 }
$pause = if ($env:POSTDEPLOY_PAUSE_SECONDS) { [int]$env:POSTDEPLOY_PAUSE_SECONDS } else { 10 }

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Fail 'the Azure CLI (az) is needed to create the Event Grid subscription; install it, run az login, then azd deploy'
}
if ($env:AZURE_SUBSCRIPTION_ID) {
    az account set --subscription $env:AZURE_SUBSCRIPTION_ID
    if ($LASTEXITCODE -ne 0) { Fail "az is not signed in to subscription $($env:AZURE_SUBSCRIPTION_ID): run az login" }
}

Write-Host "postdeploy: waiting for the blob extension's system key on $($env:AZURE_FUNCTION_APP_NAME)"
for ($n = 1; ; $n++) {
    $key = az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
        --query 'systemKeys.blobs_extension' --output tsv 2>$null
    if ($LASTEXITCODE -eq 0 -and $key) { break }
    if ($n -ge $attempts) { Fail "no blobs_extension key after $attempts tries: is $($env:BLOB_TRIGGER_FUNCTION) deployed?" }
    Start-Sleep -Seconds $pause
}
Remove-Variable key

Write-Host "postdeploy: subscribing $($env:BLOB_TRIGGER_FUNCTION) to BlobCreated in container $($env:INPUT_CONTAINER)"
az deployment group create `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --name blob-created `
    --template-file (Join-Path $PSScriptRoot '..' 'events' 'blob-created.bicep') `
    --parameters `
        functionAppName=$env:AZURE_FUNCTION_APP_NAME `
        systemTopicName=$env:EVENT_GRID_SYSTEM_TOPIC_NAME `
        dataStorageAccountName=$env:AZURE_STORAGE_ACCOUNT_NAME `
        inputContainerName=$env:INPUT_CONTAINER `
        deadLetterContainerName=$env:DEAD_LETTER_CONTAINER `
        functionName=$env:BLOB_TRIGGER_FUNCTION `
    --output none
if ($LASTEXITCODE -ne 0) { Fail 'the Event Grid subscription could not be created (see above)' }

Write-Host "postdeploy: checking $($env:HEALTH_URL)"
for ($n = 1; ; $n++) {
    try {
        $response = Invoke-WebRequest -Uri $env:HEALTH_URL -TimeoutSec 30 -UseBasicParsing
        Write-Host "postdeploy: healthy: $($response.Content)"
        exit 0
    } catch {
        $reason = $_.ErrorDetails.Message
        if (-not $reason) { $reason = $_.Exception.Message }
    }
    if ($n -ge $attempts) { Fail "not healthy after $attempts tries: $reason" }
    Start-Sleep -Seconds $pause
}
