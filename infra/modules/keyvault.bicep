// Key Vault holding the two CIJ values the relay reads at run time. RBAC only (no access policies),
// soft delete with purge protection; the relay's identity may read secrets of this vault and nothing else.
param name string
param location string
param tags object

@secure()
@description('CIJ organization ID; written to the secret cij-org-id.')
param cijOrgId string

@secure()
@description('CIJ public endpoint; written to the secret cij-public-endpoint.')
param cijPublicEndpoint string

param identityPrincipalId string

@description('Optional principal allowed to rotate the secrets (Key Vault Secrets Officer). Empty: none.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109: Flex Consumption without VNet integration has no fixed outbound addresses to allow; every call needs an Entra token and RBAC
  //checkov:skip=CKV_AZURE_189: Same reason: the relay reads the vault over its public endpoint with its managed identity
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Secret names must match the defaults of CIJ_ORG_ID_SECRET_NAME / CIJ_ENDPOINT_SECRET_NAME.
resource orgIdSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41: An identifier, not a credential with a lifetime; an expiry date would only stop the relay the day it passes
  parent: vault
  name: 'cij-org-id'
  properties: {
    value: cijOrgId
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource endpointSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41: A URL, not a credential with a lifetime; an expiry date would only stop the relay the day it passes
  parent: vault
  name: 'cij-public-endpoint'
  properties: {
    value: cijPublicEndpoint
    contentType: 'text/plain'
    attributes: {
      enabled: true
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
