// The Event Grid subscription that hands each new input blob to the blob trigger.
// Deployed by the postdeploy hook (../hooks), not by main.bicep: its endpoint carries
// the function's blobs_extension system key, which the host creates only once the
// code is deployed. The key is read here, inside ARM, so it never passes through a
// shell, a log or an azd output.
targetScope = 'resourceGroup'

@description('The function app (main.bicep output AZURE_FUNCTION_APP_NAME).')
param functionAppName string

@description('The system topic on the data account (output EVENT_GRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('The data storage account (output AZURE_STORAGE_ACCOUNT_NAME), where dead letters go.')
param dataStorageAccountName string

@description('The container the trigger watches (output INPUT_CONTAINER, from RECOMPRESS_INPUT_CONTAINER).')
param inputContainerName string

@description('The container undeliverable events are dead-lettered into (output DEAD_LETTER_CONTAINER).')
param deadLetterContainerName string

@description('The blob-triggered function (output BLOB_TRIGGER_FUNCTION).')
param functionName string

@description('Delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource data 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

var blobsExtensionKey = listKeys('${app.id}/host/default', '2024-04-01').systemKeys.blobs_extension

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'recompress-blob-created'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${app.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${inputContainerName}/blobs/'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: data.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output subscriptionName string = blobCreated.name
