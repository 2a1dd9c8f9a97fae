// The Flex Consumption plan (FC1) and the function app on it: Python, one
// user-assigned identity for everything (storage, deployment package, telemetry),
// HTTPS only, and app settings handed in whole from main.bicep.

@description('Name of the function app; also the first label of its host name.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Region of the plan and the app; it must offer Flex Consumption.')
param location string

@description('Tags for every resource of the environment.')
param tags object

@description('azd finds the app to deploy to by this tag (azure.yaml names the service).')
param serviceName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob endpoint of the host storage account, ending in /.')
param hostBlobEndpoint string

@description('Container of the host account that holds the deployed package.')
param deploymentContainerName string

@description('Python version the app runs on.')
param pythonVersion string

@description('Instance memory in MB; main.bicep says which measurement sized it.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int

@description('Most instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Every app setting as {name, value}, already composed (main.bicep).')
param appSettings array

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true //checkov:skip=CKV_AZURE_225:not offered for Flex Consumption in every region; an event missed in a zone outage is retried by Event Grid for 24 h, then dead-lettered
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per event; an always-ready instance would bill around the clock for a trigger that waits
  //checkov:skip=CKV_AZURE_213:Flex Consumption scales to zero, so no standing instance exists to probe; the postdeploy hook calls /api/health instead
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled' //checkov:skip=CKV_AZURE_222:Event Grid delivers BlobCreated to the function's public webhook; no VNet or private endpoint in this footprint
    clientCertEnabled: false //checkov:skip=CKV_AZURE_17:Event Grid cannot present a client certificate to the blob webhook
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
