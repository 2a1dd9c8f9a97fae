// The Functions host's own storage (AzureWebJobsStorage): leases, keys, blob-trigger
// receipts, and the container Flex Consumption deploys the app package from. Kept
// apart from the data account so the host's broad rights here reach no Parquet data.

@description('Name of the host storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the account.')
param location string

@description('Tags for every resource of the environment.')
param tags object

@description('Container Flex Consumption reads the deployed package from.')
param deploymentContainerName string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS' //checkov:skip=CKV_AZURE_206:host state (leases, keys, package) is rebuilt by a deploy; geo-replication would only add cost
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    isLocalUserEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled' //checkov:skip=CKV_AZURE_59:Flex Consumption without VNet integration reaches its host storage over the public endpoint; access is by Entra ID only (shared keys off)
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow' //checkov:skip=CKV_AZURE_35:as CKV_AZURE_59: no VNet in this footprint, so no network rule could admit the app while denying others
    }
  }
}

// Children at the top level with `parent:`, as in data-storage.bicep (the parsers drop nested siblings).
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deployment 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
